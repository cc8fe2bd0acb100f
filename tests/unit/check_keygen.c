/*
 * Unit tests for keygen: the DKIM record value (against RFC 8463's
 * example key and the openssl command's own output), the TXT record's
 * splitting into <= 255-byte strings, key generation, and the key file:
 * mode 0600 whatever the umask, PKCS#8 that parses back to the same key,
 * no temporary left behind, no replacement without force.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keygen.h"
#include "suites.h"
#include "util.h"

/* RFC 8463, appendix A.2: the example Ed25519 key pair. */
static const char rfc8463_seed_b64[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
static const char rfc8463_pub_b64[] = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/*
 * A throw-away 1024-bit key made for this test with `openssl genpkey`, and
 * what `openssl pkey -pubout -outform DER | base64 -w0` printed for it.
 */
static const char rsa_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAKdpWUmRWJMDWQPN\n"
    "OxmSUgLNG6jYZboGXAEx3CpvZDf0R4zuSIWElhoEh8o+ayNJ7tObtVwTqFy0rIz1\n"
    "oFpSToJilAhYeo91DvilZaw+BAXAYL10NtK0ZmtB26nIYRJWQJ7psqv+Rn3H2oSc\n"
    "67zZ5L/VxCAuiM8JhB68eUDhpIgxAgMBAAECgYA4Dr24NbQ8Hh3beQh2KpnNmFLP\n"
    "ug5uORzrxX9cskoTtneTCGM+WkRM2AGERlxnx6TyNKyI9Ygl6tXwqXsVY4Qn+BXx\n"
    "eqRjIyqWUpy7VkIr3FvYqa6LEYsgm92jwj52j08rdNqWYl+B00EZ/fNOzf5poyFH\n"
    "SDAV2gasMGet8v4YAQJBANWwXWzGoymJ0ecfXze4zwVASLaw9DBsUBYNWaIiYk47\n"
    "XqNtV+TSjMgmKZuWIpLE6rzurgCcEADrg7hzSDsSQIECQQDIjzzWhRCvW18S4lD0\n"
    "uzOTOPETt5Q0glWalDAp87E2Uvsw4ywHX2Jp9HpfiqwHfIH2TgcblRFSJx7qu+cZ\n"
    "Dm+xAkEAvQ4iOeCr7k4u1SqeVXA+SEkNjASWpljNqhT5nkaJbul7218cCih1wYZx\n"
    "/WMhB3UMsUcBzyxDxGyZxxDHcOu/AQJAFWD/cTaaArdQuSiazJuv8b+eIyXsjHRg\n"
    "P6wQPkiV2V6bHCj7JoYKbZT7/nc/w0SIbgL/Svdm80TsTMVe6xLY4QJAR3Q5kNN0\n"
    "kbA6XBw5HBe3Tq4j1AFaa7LIz5K47DUA/PuMHUaPjAauiDP9sBGOSiX4TYyZceAG\n"
    "Ss+wgPxoJ4OtSg==\n"
    "-----END PRIVATE KEY-----\n";
static const char rsa_spki_b64[] =
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCnaVlJkViTA1kDzTsZklICzRuo2GW6BlwBMdwq"
    "b2Q39EeM7kiFhJYaBIfKPmsjSe7Tm7VcE6hctKyM9aBaUk6CYpQIWHqPdQ74pWWsPgQFwGC9dDbS"
    "tGZrQdupyGESVkCe6bKr/kZ9x9qEnOu82eS/1cQgLojPCYQevHlA4aSIMQIDAQAB";

static EVP_PKEY *
pem_key(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);

	BIO_free(bio);
	ck_assert_ptr_nonnull(k);
	return k;
}

static EVP_PKEY *
rfc8463_key(void)
{
	unsigned char seed[48];
	EVP_PKEY *k;

	ck_assert_int_eq(EVP_DecodeBlock(seed, (const unsigned char *)rfc8463_seed_b64,
	    (int)strlen(rfc8463_seed_b64)), 33);	/* 32 + the padding's zero byte */
	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	ck_assert_ptr_nonnull(k);
	return k;
}

/*
 * Parses keygen_txt_record()'s output for owner: checks its frame and
 * every string's size; returns the concatenated strings, *nstr their count.
 */
static char *
parse_record(const char *rec, const char *owner, size_t *nstr)
{
	char *head = xasprintf("%s IN TXT ( \"", owner);
	size_t hl = strlen(head), rl = strlen(rec);
	struct buf out;
	const char *p, *q;

	ck_assert_msg(strncmp(rec, head, hl) == 0, "record starts %.60s", rec);
	ck_assert_msg(rl >= 4 && strcmp(rec + rl - 4, "\" )\n") == 0, "record ends %s",
	    rec + (rl > 20 ? rl - 20 : 0));
	buf_init(&out);
	buf_add(&out, "", 0);
	*nstr = 0;
	p = rec + hl - 1;	/* at the first '"' */
	for (;;) {
		ck_assert_int_eq(*p, '"');
		q = strchr(p + 1, '"');
		ck_assert_ptr_nonnull(q);
		ck_assert_msg(q - p - 1 <= KEYGEN_TXT_MAX, "string %zu has %td bytes",
		    *nstr, q - p - 1);
		buf_add(&out, p + 1, (size_t)(q - p - 1));
		(*nstr)++;
		if (strcmp(q + 1, " )\n") == 0)
			break;
		ck_assert_msg(strncmp(q + 1, "\n\t\"", 3) == 0, "between strings: %.10s", q + 1);
		p = q + 3;
	}
	free(head);
	return out.p;
}

START_TEST(txt_record_splits_at_255)
{
	const size_t lens[] = { 1, 254, 255, 256, 300, 510, 511, 765, 766, 1000 };
	const char *owner = "s1._domainkey.example.com.";
	char *value, *rec, *joined;
	size_t nstr;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		value = xmalloc(lens[i] + 1);
		for (size_t j = 0; j < lens[i]; j++)
			value[j] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[j % 64];
		value[lens[i]] = '\0';
		rec = keygen_txt_record(owner, value);
		ck_assert_ptr_nonnull(rec);
		joined = parse_record(rec, owner, &nstr);
		ck_assert_str_eq(joined, value);
		ck_assert_uint_eq(nstr, (lens[i] + KEYGEN_TXT_MAX - 1) / KEYGEN_TXT_MAX);
		free(joined);
		free(rec);
		free(value);
	}
}
END_TEST

START_TEST(txt_record_exact_text)
{
	char *rec = keygen_txt_record("s1._domainkey.example.com.", "v=DKIM1; k=ed25519; p=AAAA");

	ck_assert_str_eq(rec, "s1._domainkey.example.com. IN TXT ( \"v=DKIM1; k=ed25519; p=AAAA\" )\n");
	free(rec);
}
END_TEST

START_TEST(txt_record_refuses_what_needs_escaping)
{
	ck_assert_ptr_null(keygen_txt_record("x.", "a\"b"));
	ck_assert_ptr_null(keygen_txt_record("x.", "a\\b"));
	ck_assert_ptr_null(keygen_txt_record("x.", "a\nb"));
	ck_assert_ptr_null(keygen_txt_record("x.", "a\xc3\xa9"));
}
END_TEST

START_TEST(dkim_value_ed25519_rfc8463)
{
	EVP_PKEY *k = rfc8463_key();
	char err[256], *v = keygen_dkim_value(k, err, sizeof(err));

	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
	ck_assert_str_eq(v + strlen(v) - strlen(rfc8463_pub_b64), rfc8463_pub_b64);
	free(v);
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(dkim_value_rsa_is_spki)
{
	EVP_PKEY *k = pem_key(rsa_pem);
	char err[256], *v = keygen_dkim_value(k, err, sizeof(err));
	char *want = xasprintf("v=DKIM1; k=rsa; p=%s", rsa_spki_b64);
	char *rec, *joined;
	size_t nstr;

	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, want);
	/* and through the record: one string for a 1024-bit key */
	rec = keygen_txt_record("s1._domainkey.example.com.", v);
	joined = parse_record(rec, "s1._domainkey.example.com.", &nstr);
	ck_assert_str_eq(joined, v);
	ck_assert_uint_eq(nstr, 1);
	free(joined);
	free(rec);
	free(want);
	free(v);
	EVP_PKEY_free(k);
}
END_TEST

/* The p= of value decoded, checked to be the public half of k. */
static void
assert_value_matches(const char *value, EVP_PKEY *k)
{
	const char *p = strstr(value, "; p=");
	unsigned char der[1024], raw[32];
	const unsigned char *dp = der;
	size_t b64len, rawlen = sizeof(raw);
	int n;
	EVP_PKEY *pub;

	ck_assert_ptr_nonnull(p);
	p += 4;
	b64len = strlen(p);
	ck_assert_uint_lt(b64len, sizeof(der) * 4 / 3);
	n = EVP_DecodeBlock(der, (const unsigned char *)p, (int)b64len);
	ck_assert_int_gt(n, 0);
	n -= (b64len > 0 && p[b64len - 1] == '=') + (b64len > 1 && p[b64len - 2] == '=');
	if (EVP_PKEY_is_a(k, "RSA")) {
		ck_assert_msg(strncmp(value, "v=DKIM1; k=rsa; p=", 18) == 0, "%s", value);
		pub = d2i_PUBKEY(NULL, &dp, n);
		ck_assert_ptr_nonnull(pub);
		ck_assert_int_eq(EVP_PKEY_eq(pub, k), 1);
		EVP_PKEY_free(pub);
	} else {
		ck_assert_msg(strncmp(value, "v=DKIM1; k=ed25519; p=", 22) == 0, "%s", value);
		ck_assert_int_eq(n, 32);
		ck_assert_int_eq(EVP_PKEY_get_raw_public_key(k, raw, &rawlen), 1);
		ck_assert_mem_eq(der, raw, 32);
	}
}

START_TEST(generate_rsa_and_ed25519)
{
	char err[256], *v;
	EVP_PKEY *k;

	k = keygen_generate(KEYGEN_RSA, 1024, err, sizeof(err));
	ck_assert_msg(k != NULL, "%s", err);
	ck_assert(EVP_PKEY_is_a(k, "RSA"));
	ck_assert_int_eq(EVP_PKEY_get_bits(k), 1024);
	v = keygen_dkim_value(k, err, sizeof(err));
	assert_value_matches(v, k);
	free(v);
	EVP_PKEY_free(k);

	k = keygen_generate(KEYGEN_RSA, 2048, err, sizeof(err));
	ck_assert_msg(k != NULL, "%s", err);
	ck_assert_int_eq(EVP_PKEY_get_bits(k), 2048);
	v = keygen_dkim_value(k, err, sizeof(err));
	assert_value_matches(v, k);
	ck_assert_uint_gt(strlen(v), KEYGEN_TXT_MAX);	/* needs two strings */
	free(v);
	EVP_PKEY_free(k);

	k = keygen_generate(KEYGEN_ED25519, 0, err, sizeof(err));
	ck_assert_msg(k != NULL, "%s", err);
	ck_assert(EVP_PKEY_is_a(k, "ED25519"));
	v = keygen_dkim_value(k, err, sizeof(err));
	assert_value_matches(v, k);
	ck_assert_uint_eq(strlen(v), strlen("v=DKIM1; k=ed25519; p=") + 44);
	free(v);
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(generate_refuses_bad_sizes)
{
	char err[256];

	err[0] = '\0';
	ck_assert_ptr_null(keygen_generate(KEYGEN_RSA, 512, err, sizeof(err)));
	ck_assert_msg(strstr(err, "1024") != NULL, "%s", err);
	ck_assert_ptr_null(keygen_generate(KEYGEN_RSA, 8192, err, sizeof(err)));
	ck_assert_ptr_null(keygen_generate(KEYGEN_RSA, 0, err, sizeof(err)));
	ck_assert_ptr_null(keygen_generate(KEYGEN_ED25519, 2048, err, sizeof(err)));
}
END_TEST

static char *
make_tmpdir(void)
{
	char *d = xstrdup("/tmp/check_keygen.XXXXXX");

	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}

/* Names in dir, other than . and .., joined with spaces. */
static char *
dir_names(const char *dir, int *count)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	struct buf b;

	ck_assert_ptr_nonnull(dp);
	buf_init(&b);
	buf_add(&b, "", 0);
	*count = 0;
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		buf_printf(&b, "%s%s", *count ? " " : "", de->d_name);
		(*count)++;
	}
	closedir(dp);
	return b.p;
}

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *s = xmalloc(16384);
	size_t n;

	ck_assert_ptr_nonnull(fp);
	n = fread(s, 1, 16383, fp);
	s[n] = '\0';
	fclose(fp);
	return s;
}

static void
rm_tree(char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *de;

	if (dp != NULL) {
		while ((de = readdir(dp)) != NULL) {
			char *p = xasprintf("%s/%s", dir, de->d_name);

			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				unlink(p);
			free(p);
		}
		closedir(dp);
	}
	rmdir(dir);
	free(dir);
}

START_TEST(write_key_mode_0600_pkcs8_roundtrip)
{
	const enum keygen_alg algs[] = { KEYGEN_RSA, KEYGEN_ED25519 };
	char *dir = make_tmpdir(), *path = xasprintf("%s/example.com.s1.key", dir);
	char err[256], *names, *text;
	struct stat st;
	EVP_PKEY *k, *back;
	FILE *fp;
	int n;

	for (size_t i = 0; i < 2; i++) {
		k = keygen_generate(algs[i], algs[i] == KEYGEN_RSA ? 1024 : 0, err, sizeof(err));
		ck_assert_ptr_nonnull(k);
		unlink(path);
		/* A permissive umask must not leak the key. */
		umask(0);
		ck_assert_msg(keygen_write_key(k, path, false, (uid_t)-1, (gid_t)-1, err,
		    sizeof(err)) == 0, "%s", err);
		umask(022);
		ck_assert_int_eq(lstat(path, &st), 0);
		ck_assert(S_ISREG(st.st_mode));
		ck_assert_uint_eq(st.st_mode & 07777, 0600);
		names = dir_names(dir, &n);
		ck_assert_msg(n == 1, "left in the directory: %s", names);
		free(names);

		text = slurp(path);
		ck_assert_msg(strncmp(text, "-----BEGIN PRIVATE KEY-----\n", 28) == 0, "%s", text);
		free(text);
		fp = fopen(path, "r");
		back = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
		fclose(fp);
		ck_assert_ptr_nonnull(back);
		ck_assert_int_eq(EVP_PKEY_eq(back, k), 1);
		ck_assert(EVP_PKEY_is_a(back, algs[i] == KEYGEN_RSA ? "RSA" : "ED25519"));
		EVP_PKEY_free(back);
		EVP_PKEY_free(k);
	}
	free(path);
	rm_tree(dir);
}
END_TEST

START_TEST(write_key_refuses_overwrite_without_force)
{
	char *dir = make_tmpdir(), *path = xasprintf("%s/k.key", dir);
	char err[256], *first, *now, *names;
	EVP_PKEY *a = rfc8463_key(), *b = keygen_generate(KEYGEN_ED25519, 0, err, sizeof(err));
	int n;

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(keygen_check_path(path, false, err, sizeof(err)), 0);
	ck_assert_int_eq(keygen_write_key(a, path, false, (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	first = slurp(path);

	err[0] = '\0';
	ck_assert_int_eq(keygen_check_path(path, false, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "exists") && strstr(err, "--force"), "%s", err);
	ck_assert_int_eq(keygen_check_path(path, true, err, sizeof(err)), 0);

	/* without force: refused at the moment of install too */
	err[0] = '\0';
	ck_assert_int_eq(keygen_write_key(b, path, false, (uid_t)-1, (gid_t)-1, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "exists") != NULL, "%s", err);
	now = slurp(path);
	ck_assert_str_eq(now, first);
	free(now);
	names = dir_names(dir, &n);
	ck_assert_msg(n == 1, "left in the directory: %s", names);
	free(names);

	/* with force: replaced */
	ck_assert_int_eq(keygen_write_key(b, path, true, (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	now = slurp(path);
	ck_assert_str_ne(now, first);
	free(now);
	names = dir_names(dir, &n);
	ck_assert_msg(n == 1, "left in the directory: %s", names);
	free(names);

	free(first);
	free(path);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	rm_tree(dir);
}
END_TEST

START_TEST(missing_directory_is_not_created)
{
	char *dir = make_tmpdir(), *sub = xasprintf("%s/dkim", dir);
	char *path = xasprintf("%s/k.key", sub), err[512];
	EVP_PKEY *k = rfc8463_key();
	struct stat st;

	err[0] = '\0';
	ck_assert_int_eq(keygen_check_path(path, false, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, sub) && strstr(err, "does not exist"), "%s", err);
	ck_assert_int_eq(keygen_write_key(k, path, false, (uid_t)-1, (gid_t)-1, err, sizeof(err)), -1);
	ck_assert_int_eq(stat(sub, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	EVP_PKEY_free(k);
	free(path);
	free(sub);
	rm_tree(dir);
}
END_TEST

Suite *
keygen_suite(void)
{
	Suite *s = suite_create("keygen");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);	/* RSA generation under sanitizers */
	tcase_add_test(tc, txt_record_splits_at_255);
	tcase_add_test(tc, txt_record_exact_text);
	tcase_add_test(tc, txt_record_refuses_what_needs_escaping);
	tcase_add_test(tc, dkim_value_ed25519_rfc8463);
	tcase_add_test(tc, dkim_value_rsa_is_spki);
	tcase_add_test(tc, generate_rsa_and_ed25519);
	tcase_add_test(tc, generate_refuses_bad_sizes);
	tcase_add_test(tc, write_key_mode_0600_pkcs8_roundtrip);
	tcase_add_test(tc, write_key_refuses_overwrite_without_force);
	tcase_add_test(tc, missing_directory_is_not_created);
	suite_add_tcase(s, tc);
	return s;
}
