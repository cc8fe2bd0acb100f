/* qid: placeholder */
