/* smtp_server: placeholder */
