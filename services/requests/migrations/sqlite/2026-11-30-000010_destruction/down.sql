DROP TABLE destructions;
