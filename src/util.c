/* util: placeholder */
