/*
 * fuzz_control — the control socket's protocol (control.h), both ends:
 * the daemon's reading of a request line (control_parse_request) and
 * relayctl's reading of the answers to queue, flush/remove and wait
 * (ctl_queue_print, ctl_simple_print, ctl_wait_print in ctlclient.c).
 *
 * Input: the first line is a request as the daemon reads it (up to the
 * LF, a NUL ending it where it has one); the whole input is also an
 * answer as relayctl receives it.  Properties:
 *  - a request's words are non-empty, hold no space or tab, and lie in
 *    the line; an empty line is refused;
 *  - `relayctl queue --json` prints valid JSON whatever the answer: an
 *    array of objects with the members relayctl(8) lists, every string a
 *    valid UTF-8 JSON string (what scripts and monitoring read);
 *  - the other readers print something and return an exit status of
 *    relayctl(8): 0 or 1.
 */
#include "acconfig.h"

#include <jansson.h>

#include "control.h"
#include "ctlclient.h"
#include "fuzz.h"

static void
fuzz_request(const uint8_t *p, size_t n)
{
	const uint8_t *lf = memchr(p, '\n', n);
	size_t len = lf != NULL ? (size_t)(lf - p) : n;
	char *line = fuzz_dup(p, len, true);
	size_t slen = strlen(line);
	struct control_request r;

	if (control_parse_request(line, &r) == 0) {
		for (size_t i = 0; i < r.nids; i++) {
			size_t k = strlen(r.ids[i]);

			FUZZ_CHECK(k > 0 && strpbrk(r.ids[i], " \t") == NULL &&
			    r.ids[i] > line && r.ids[i] + k <= line + slen,
			    "queue id \"%s\" is no word of the line", r.ids[i]);
		}
		control_request_free(&r);
	} else {
		FUZZ_CHECK(slen == strspn(line, " \t"), "a request with words refused");
	}
	free(line);
}

/* The JSON of relayctl queue --json: an array of messages. */
static void
check_json(const char *out, size_t len)
{
	static const char *const members[] = { "id", "arrival", "size", "sender", "recipients" };
	json_error_t err;
	/* (JSON numbers have no bound; jansson's integers stop at 2^63) */
	json_t *a = json_loadb(out, len, JSON_DECODE_INT_AS_REAL, &err);

	FUZZ_CHECK(a != NULL, "relayctl queue --json printed invalid JSON (%s at %d:%d): %.*s",
	    err.text, err.line, err.column, (int)(len < 2000 ? len : 2000), out);
	FUZZ_CHECK(json_is_array(a), "not an array");
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *m = json_array_get(a, i);

		for (size_t k = 0; k < sizeof(members) / sizeof(members[0]); k++)
			FUZZ_CHECK(json_object_get(m, members[k]) != NULL, "a message without %s",
			    members[k]);
		FUZZ_CHECK(json_is_array(json_object_get(m, "recipients")), "recipients");
	}
	json_decref(a);
}

static void
fuzz_answers(const uint8_t *p, size_t n)
{
	char *out = NULL, *ans;
	size_t len = 0;
	FILE *f;
	int rc;

	/* (each reader cuts its answer in place: a copy each) */
	ans = fuzz_dup(p, n, true);
	if ((f = open_memstream(&out, &len)) == NULL)
		abort();
	rc = ctl_queue_print(ans, true, 1700000000, f);
	fclose(f);
	FUZZ_CHECK(rc == CTL_EXIT_OK || rc == CTL_EXIT_FAIL, "exit status %d", rc);
	check_json(out, len);
	free(out);
	free(ans);

	ans = fuzz_dup(p, n, true);
	if ((f = open_memstream(&out, &len)) == NULL)
		abort();
	rc = ctl_queue_print(ans, false, 1700000000, f);
	FUZZ_CHECK(rc == CTL_EXIT_OK || rc == CTL_EXIT_FAIL, "exit status %d", rc);
	fclose(f);
	free(out);
	free(ans);

	static const char *const cmds[] = { "flush", "remove" };
	for (size_t i = 0; i < 2; i++) {
		ans = fuzz_dup(p, n, true);
		if ((f = fopen("/dev/null", "w")) == NULL)
			abort();
		rc = ctl_simple_print(cmds[i], ans, f);
		FUZZ_CHECK(rc == CTL_EXIT_OK || rc == CTL_EXIT_FAIL, "exit status %d", rc);
		fclose(f);
		free(ans);
	}
	ans = fuzz_dup(p, n, true);
	if ((f = fopen("/dev/null", "w")) == NULL)
		abort();
	rc = ctl_wait_print("0A1b2C3d4E5", ans, f);
	FUZZ_CHECK(rc == CTL_EXIT_OK || rc == CTL_EXIT_FAIL, "exit status %d", rc);
	fclose(f);
	free(ans);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_request(data, size);
	fuzz_answers(data, size);
	return 0;
}
