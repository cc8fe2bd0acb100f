/* One Check suite per module; check_main.c runs them all. */
#ifndef RELAYD_TEST_SUITES_H
#define RELAYD_TEST_SUITES_H

#include <check.h>

Suite *addr_suite(void);
Suite *bounce_suite(void);
Suite *config_suite(void);
Suite *control_suite(void);
Suite *data_suite(void);
Suite *delivery_suite(void);
Suite *keygen_suite(void);
Suite *log_suite(void);
Suite *dkim_suite(void);
Suite *dmarc_suite(void);
Suite *dnscheck_suite(void);
Suite *msghdr_suite(void);
Suite *net_suite(void);
Suite *oauth_suite(void);
Suite *qid_suite(void);
Suite *queue_suite(void);
Suite *router_suite(void);
Suite *sendmail_suite(void);
Suite *smtp_client_suite(void);
Suite *smtp_parse_suite(void);
Suite *smtp_reply_suite(void);
Suite *spf_suite(void);
Suite *spool_suite(void);

#endif
