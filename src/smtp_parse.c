/* smtp_parse: placeholder, being written */
