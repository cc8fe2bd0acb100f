/*
 * qid — queue ids: strictly increasing 64-bit values from the microsecond
 * clock, written as QID_LEN base-62 digits (0-9A-Za-z, ASCII order), so
 * that string order is arrival order.  See qid.h.
 */
#include "acconfig.h"

#include <string.h>

#include "qid.h"
#include "util.h"

static const char qid_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static uint64_t qid_last;

void
qid_init(uint64_t floor)
{
	if (floor > qid_last)
		qid_last = floor;
}

void
qid_encode(uint64_t v, char out[QID_SIZE])
{
	for (int i = QID_LEN - 1; i >= 0; i--) {
		out[i] = qid_alphabet[v % 62];
		v /= 62;
	}
	out[QID_LEN] = '\0';
}

bool
qid_decode(const char *s, uint64_t *v)
{
	uint64_t r = 0;

	if (strlen(s) != QID_LEN)
		return false;
	for (int i = 0; i < QID_LEN; i++) {
		const char *p = s[i] ? strchr(qid_alphabet, s[i]) : NULL;
		uint64_t d;

		if (p == NULL)
			return false;
		d = (uint64_t)(p - qid_alphabet);
		/* 62^11 exceeds 2^64: reject what would overflow. */
		if (r > (UINT64_MAX - d) / 62)
			return false;
		r = r * 62 + d;
	}
	*v = r;
	return true;
}

uint64_t
qid_next(char out[QID_SIZE])
{
	int64_t now = now_us();
	uint64_t v = now > 0 ? (uint64_t)now : 0;

	if (v <= qid_last)
		v = qid_last + 1;
	qid_last = v;
	qid_encode(v, out);
	return v;
}
