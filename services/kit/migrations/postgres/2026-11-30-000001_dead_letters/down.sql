DROP TABLE pdp_dead_letters;
