/* listener: placeholder */
