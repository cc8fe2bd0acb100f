/* net: placeholder, being written */
