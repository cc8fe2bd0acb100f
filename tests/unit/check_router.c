#include "suites.h"
/* placeholder, being written */
Suite *router_suite(void) { return suite_create("router"); }
