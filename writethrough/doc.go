// Package writethrough executes writes to stripe.* tables for the proxy:
// the layer between a translate.Statement and the client's reply.
//
// For one intercepted statement (Interceptor.Execute):
//
//  1. In a failed transaction (status E) it answers 25P02; Stripe is not
//     called. An unqualified table name is resolved with the client's
//     search_path (to_regclass on the client's connection); a name that is
//     not ours passes through untouched, and one that is ours is written
//     stripe.<name> in every query of the statement, so that a
//     set_config('search_path', …) the statement evaluates can't make a
//     later query (RETURNING) read another table's columns. A simple Query, which Postgres has
//     not parsed, is then prepared (not run) upstream as the client sent it,
//     so that Postgres refuses what it would refuse, with positions in the
//     client's text; a $n it gives no value for is refused (42P02), as
//     Postgres would. A text that is not UTF-8 (another client_encoding)
//     can't be parsed here: Postgres converts it, and if it writes to a
//     stripe table it is refused (0A000: its literals are in the client's
//     encoding), else it goes upstream as sent. A text whose ordinary
//     string literals have backslashes is read with the session's
//     standard_conforming_strings (one query to learn it), as Postgres
//     reads it.
//  2. Privileges are checked on the client's own connection, as its own
//     role (has_table_privilege: the statement's privilege, plus SELECT
//     where it reads, and SELECT on every column RETURNING reads, all of
//     them for * or a whole-row reference; the query names its operators
//     with pg_catalog, so an operator the client created can't change the
//     answer): 42501 and no Stripe call when
//     missing, as Postgres refuses such a statement before it changes
//     anything, although our RETURNING runs after the calls. A RETURNING
//     that is more than column references and constants (functions,
//     operators, subqueries, which may read other tables) is also started
//     over no rows on the client's connection, one more round trip, so
//     that Postgres checks what it needs before any call. Columns that
//     WHERE and SET read are checked by Postgres itself when step 3 reads
//     them on the client's connection (also before any call); in a
//     read-only transaction, 25006. Row-level security active for the
//     role on the table is refused too (42501): our queries would read
//     with SELECT's policies, not the write's, and the apply runs as
//     pgstripe's role.
//     A session on another database than Config.Pool's (the proxy opens
//     whichever the client names; any role may own one with a schema
//     called stripe) is refused too (0A000): its tables are not the
//     copy of the Stripe account pgstripe writes to.
//  3. Postgres evaluates the values: the plan's SELECT runs on the client's
//     connection with the client's parameters (text or binary), so role,
//     search_path, session settings and the client's own transaction apply.
//     The values come in the session's client_encoding: those with
//     non-ASCII bytes are converted to UTF-8 by Postgres (convert_to)
//     unless it is UTF8.
//     That one query is the statement's only evaluation of VALUES, WHERE
//     and SET (random(), nextval(), clock_timestamp() run once per row, as
//     in Postgres): the rows sent to Stripe, applied, counted in the
//     command tag and returned are the ones it gave. A DELETE's RETURNING
//     is part of it (the rows as they were).
//     No row lock is taken there: a lock held by the client's transaction
//     would block our own apply below. An UPDATE then takes an advisory
//     lock per object found (on the client's connection, held until the
//     client's transaction ends) and evaluates again only the rows another
//     write changed in between (WHERE and SET over the new version, as
//     Postgres's EvalPlanQual does), so two sessions running SET balance =
//     balance + 100 at once add 200, as row locks make them do in
//     Postgres. Unlike a row lock, which only a role that may write the
//     table can hold, the advisory lock's key can be taken by any role
//     that may connect, so the wait for it is bounded: by the session's
//     lock_timeout when set (as a row lock's wait is), else by
//     Config.LockWait (default Config.Timeout, about the longest a
//     write-through outside a transaction block holds an object), set as
//     lock_timeout for that one query. Past it the UPDATE fails with
//     55P03 naming the objects, before any Stripe call. So a session that
//     holds an object in a transaction block longer than that makes
//     another session's UPDATE of it fail where Postgres would have it
//     wait; statement_timeout and deadlock detection apply as usual.
//  4. translate builds the Stripe calls and checks every row first (unknown
//     or read-only columns, NULLs Stripe can't take, parameters a create
//     requires, status values, Stripe's metadata limits, at most 100
//     rows, expand in _params, refused with 0A000 because Stripe's answer
//     would carry whole objects of other tables into _raw and RETURNING):
//     an error means no call at all. An object given whole where
//     Stripe takes its id (an item's price) is compared with its stored
//     row, and metadata an UPDATE sets through _params (the object's,
//     an item's) is counted with the keys of the row's stored copy, both
//     read first on pgstripe's pool (translate.Statement.Objects),
//     counted in Config.MaxHeld until the calls are built (RETURNING has
//     that room again), from tables the client's role may SELECT
//     without row-level security (else it counts as not stored: whether a
//     copy passes would tell the client about rows it can't read).
//  5. The calls go out at interactive priority, up to Config.Concurrency
//     rows at a time (a row's own calls in order), each with an idempotency
//     key unique to this execution, row and call, so stripeapi's retries
//     never create twice. After a failure no further row is started. Inside
//     BEGIN a NOTICE says ROLLBACK cannot undo it; in an autocommit
//     pipeline, the proxy warns before an error later in it (see
//     proxy.Call.Lasting): the reply names the statement for that.
//  6. Stripe's answers (with nested lists completed when Stripe cut them)
//     are upserted through store on pgstripe's own pool, committed whatever
//     the client does, with a lock timeout: if the client holds a row lock
//     the apply gives up, a NOTICE says so, and the events loop catches up.
//     When the store can't order the answer against the stored row (same
//     Stripe second, different content), the answer is still known to be
//     newer if the row is unchanged since Eval read it (its version, from
//     _synced_at): the stored _as_of is moved a microsecond back in the same
//     transaction and the answer applies. Otherwise the object is
//     re-fetched (its version read first, so the same argument holds) and
//     applied. After a write to a child table (subscription_items) the
//     parent is re-read too, so the list it embeds is current.
//  7. RETURNING is answered by Postgres: the statement's own target list is
//     selected from the freshly applied rows on the client's connection
//     (ids in statement order, result formats from Bind). Command tags are
//     INSERT 0 n, UPDATE n, DELETE n (UPDATE counts matched rows, also those
//     with nothing to change, which make no call). When the client's
//     snapshot predates the apply (REPEATABLE READ or SERIALIZABLE, also
//     through default_transaction_isolation outside a transaction block,
//     where our queries share one implicit transaction), pgstripe's pool reads
//     the applied rows and the target list runs over them, given as jsonb,
//     still on the client's connection: the client's expressions never run
//     on pgstripe's own connection, whose role has more privileges. The
//     rows given carry only the columns the client's role may read (the
//     others NULL): the target list is parsed anew there, after the
//     statement's expressions may have changed what its names mean (a
//     temp table a function creates). A column named with the target's
//     schema ("stripe"."customers"."name", as Prisma writes it) works
//     there as over the table.
//
// # Stripe errors
//
// A failed call becomes an ErrorResponse with Stripe's message; DETAIL
// carries Stripe's type, code, decline_code, param and request id, HINT the
// doc URL. Nothing of a failed call is applied; when an earlier call of the
// same row succeeded (an update before a status change), the state it left
// is applied and DETAIL says so. In a multi-row statement the rows that did
// reach Stripe are applied locally and DETAIL lists them with their ids,
// and the other rows that failed without a definite answer; after a failure
// no further row is started. A 2xx answer that is not an object with an id
// counts as a failure of unknown outcome. Stripe ignores idempotency keys
// on DELETE, so a retry after a lost answer finds the object gone: when
// Stripe refuses a DELETE with a 4xx other than 429, the object is
// retrieved, and a 404, a deleted stub or a canceled subscription counts
// as done. When only RETURNING fails (a run time error, a lost or
// cancelled connection) after every call succeeded, the error is
// Postgres's and DETAIL lists the rows that reached Stripe. A statement
// without RETURNING (or a DELETE, whose RETURNING ran before the calls)
// that reached Stripe runs SELECT 1 on the client's connection before it
// answers, so that a connection lost during the calls (a Postgres
// restart) gets that error with the same DETAIL instead of a success
// the client never sees whole.
//
//	Stripe answer                                   SQLSTATE
//	card_error (any code, e.g. card_declined)       P0001 raise_exception
//	404 / resource_missing                          P0002 no_data_found
//	invalid_request_error with a param / parameter_* 22023 invalid_parameter_value
//	other invalid_request_error (wrong state)       55000 object_not_in_prerequisite_state
//	idempotency_error                               55000 object_not_in_prerequisite_state
//	429 / rate_limit                                53400 configuration_limit_exceeded
//	429 lock_timeout, 409 idempotency_key_in_use    55P03 lock_not_available
//	401 authentication_error                        28000 invalid_authorization_specification
//	403 permission_error                            42501 insufficient_privilege
//	5xx / api_error                                 58000 system_error
//	no answer (network)                             58030 io_error
//	no connection at all (refused, no such host)    58030 io_error, DETAIL: not reached, nothing changed
//	no answer in time (Config.Timeout, or the       57014 query_canceled
//	session's statement_timeout)
//
// Errors found before any call use Postgres's own codes: 0A000 (no Stripe
// equivalent), 42703 (unknown column, or one Stripe doesn't take), 54000
// (more than 100 rows, or more data than Config.MaxHeld), 23502 (NULL where Stripe can't unset, or a
// parameter a create requires missing), 42501, 25P02, 25006 (read-only
// transaction), 55P03 (an UPDATE's wait for an object another session
// holds ran out: step 3).
//
// # Limits
//
// Unqualified names that match a stripe table (INSERT INTO customers …) are
// intercepted and resolved per statement, one extra round trip; when they
// resolve elsewhere the statement is run as it is on the client's
// connection. A multi-statement Query or COPY FROM whose unqualified target
// resolves to a stripe table is refused (0A000) like its qualified form;
// when the name resolves elsewhere the proxy sends the statement on as the
// client sent it. SQL EXECUTE (also under EXPLAIN ANALYZE) may run a
// statement prepared through the protocol, which the proxy intercepts only
// at its protocol Execute: the prepared statement's text is looked up
// (pg_prepared_statements) and classified, and EXECUTE of a write to a
// stripe table is refused (0A000); any other goes upstream as sent. A
// read-only WITH clause on the write is evaluated once, as in Postgres:
// with the statement's VALUES, WHERE and SET (and a DELETE's RETURNING) in
// Eval; the WITH queries that RETURNING of an INSERT or UPDATE reads are
// evaluated first, alone, each once (one more round trip each, and one for
// their column types), and every query then reads their rows as data (in
// text form; one with a column of an anonymous record type, which can't be
// read back, stays as written and is evaluated anew). Unlike Postgres,
// such a WITH query is read to its end even where the statement would
// have stopped early (a LIMIT over an unbounded recursive one).
//
// What the statement's own queries bring into memory is bounded by
// Config.MaxHeld (64 MB), counted over all of them: the WITH queries
// RETURNING reads, the evaluated values (a DELETE's RETURNING with them),
// the rows re-evaluated after a wait, their conversion to UTF-8, and
// RETURNING. Past it the query is cancelled upstream (a WITH query may be
// endless) without reading its rows, and the statement is refused with
// 54000 (as FATAL, ending the session, when upstream gave no cancel key,
// as behind some poolers: its connection is closed instead); before any Stripe call, except RETURNING of an INSERT or UPDATE,
// which runs after the calls and fails as any error of RETURNING does,
// DETAIL saying what reached Stripe. The
// re-evaluation of an UPDATE's row changed by another write meanwhile
// evaluates the other WITH queries anew. Triggers on stripe tables fire
// on pgstripe's own connection (the apply), not the client's, with its
// search_path (pg_catalog, pg_temp).
package writethrough
