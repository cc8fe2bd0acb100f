/* router: placeholder, being written */
