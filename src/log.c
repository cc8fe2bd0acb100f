/* log: placeholder */
