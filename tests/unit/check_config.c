#include "suites.h"
/* placeholder, being written */
Suite *config_suite(void) { return suite_create("config"); }
