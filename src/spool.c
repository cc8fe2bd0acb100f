/* spool: placeholder */
