/*
 * check_main — runs every unit suite and prints Check's summary.
 * CK_FORK stays at Check's default (fork per test) so a crash in one test is
 * reported as an error, not the end of the run.
 */
#include <stdlib.h>

#include "suites.h"

int
main(void)
{
	SRunner *sr = srunner_create(addr_suite());

	srunner_add_suite(sr, bounce_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, control_suite());
	srunner_add_suite(sr, data_suite());
	srunner_add_suite(sr, delivery_suite());
	srunner_add_suite(sr, keygen_suite());
	srunner_add_suite(sr, dkim_suite());
	srunner_add_suite(sr, dmarc_suite());
	srunner_add_suite(sr, dnscheck_suite());
	srunner_add_suite(sr, log_suite());
	srunner_add_suite(sr, msghdr_suite());
	srunner_add_suite(sr, net_suite());
	srunner_add_suite(sr, oauth_suite());
	srunner_add_suite(sr, qid_suite());
	srunner_add_suite(sr, queue_suite());
	srunner_add_suite(sr, router_suite());
	srunner_add_suite(sr, sendmail_suite());
	srunner_add_suite(sr, smtp_client_suite());
	srunner_add_suite(sr, smtp_parse_suite());
	srunner_add_suite(sr, smtp_reply_suite());
	srunner_add_suite(sr, spf_suite());
	srunner_add_suite(sr, spool_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
