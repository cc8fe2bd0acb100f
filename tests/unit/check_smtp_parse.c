#include "suites.h"
/* placeholder, being written */
Suite *smtp_parse_suite(void) { return suite_create("smtp_parse"); }
