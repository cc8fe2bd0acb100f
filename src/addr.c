/* addr: placeholder, being written */
