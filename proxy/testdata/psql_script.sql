\set ON_ERROR_STOP 0
CREATE TABLE t (id int primary key, s text, j jsonb);
INSERT INTO t SELECT g, 'row ' || g, jsonb_build_object('g', g) FROM generate_series(1, 2000) g;
\copy t TO 'COPYFILE' csv
TRUNCATE t;
\copy t FROM 'COPYFILE' csv
SELECT count(*), sum(id), min(s), max(j->>'g') FROM t;
COPY t FROM STDIN;
5001	copied	{"c": 1}
5002	copied too	\N
\.
COPY t FROM STDIN;
6001	bad	not json
\.
SELECT * FROM t WHERE id > 5000 ORDER BY id;
COPY (SELECT id, s FROM t WHERE id % 400 = 0 ORDER BY id) TO STDOUT;
SELECT 1/0;
BEGIN;
INSERT INTO t VALUES (7000, 'in tx', NULL);
SELECT nosuch;
SELECT 1;
ROLLBACK;
SELECT count(*) FROM t WHERE id = 7000;
\d t
DO $$ BEGIN RAISE NOTICE 'a notice %', 42; END $$;
SET application_name = 'psql-through';
SHOW application_name;
SELECT repeat('x', 200000) = repeat('x', 200000) AS big;
SELECT 1 \; SELECT 2 \; SELECT 3;
PREPARE p (int) AS SELECT s FROM t WHERE id = $1;
EXECUTE p (42);
\bind 7
SELECT $1::int * 6 \g
