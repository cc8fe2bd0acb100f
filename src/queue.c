/* queue: placeholder */
