/* data: placeholder, being written */
