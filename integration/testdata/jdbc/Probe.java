// The PostgreSQL JDBC driver (pgjdbc) against the pgstripe proxy. Run by
// integration/drivers_test.go, compiled at test time:
//
//   java Probe pass  JDBC_URL   statements that pass through untouched; the
//                               test runs it through the proxy and directly
//                               and compares the outputs
//   java Probe write JDBC_URL   writes to stripe.* (proxy only)
//   java Probe slow  JDBC_URL   a write while Stripe takes 3 s: setQueryTimeout
//
// Each mode runs under several driver settings. Output is one line per
// step, with nothing that changes from run to run (no ids, no times).
import java.sql.*;
import java.util.*;

public class Probe {
    static void p(String s) { System.out.println(s); }

    static String err(SQLException e) { return "ERR " + e.getSQLState() + " " + e.getMessage().split("\n")[0]; }

    static String rows(ResultSet rs) throws SQLException {
        StringBuilder b = new StringBuilder();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            b.append("[");
            for (int i = 1; i <= n; i++) {
                if (i > 1) b.append("|");
                Object o = rs.getObject(i);
                b.append(o instanceof byte[] ? "bytes" + Arrays.toString((byte[]) o) : rs.getString(i));
            }
            b.append("]");
        }
        return b.toString();
    }

    interface Step { void run() throws Exception; }

    // step runs one step; an unexpected error is printed, not thrown, so
    // that the output shows every step.
    static void step(String name, Step s) {
        try { s.run(); } catch (SQLException e) { p(name + " " + err(e)); } catch (Exception e) { p(name + " EXCEPTION " + e); }
    }

    static final String[] PASS_SETTINGS = {
        "", "prepareThreshold=-1&binaryTransfer=true", "prepareThreshold=1&binaryTransfer=false",
        "preferQueryMode=simple", "preferQueryMode=extendedCacheEverything",
    };
    static final String[] WRITE_SETTINGS = {
        "", "prepareThreshold=-1&binaryTransfer=true", "preferQueryMode=simple", "autosave=always",
    };

    public static void main(String[] a) throws Exception {
        String mode = a[0], url = a[1];
        String[] settings = mode.equals("pass") ? PASS_SETTINGS : mode.equals("write") ? WRITE_SETTINGS : new String[]{"", "preferQueryMode=simple"};
        for (int i = 0; i < settings.length; i++) {
            p("== " + (settings[i].isEmpty() ? "defaults" : settings[i]));
            try (Connection c = DriverManager.getConnection(url + (settings[i].isEmpty() ? "" : (url.contains("?") ? "&" : "?") + settings[i]))) {
                String tag = "jdbc" + i;
                if (mode.equals("pass")) pass(c, i == 0);
                else if (mode.equals("write")) write(c, tag, i == 0);
                else slow(c, tag);
            }
        }
    }

    static void pass(Connection c, boolean first) throws Exception {
        try (Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS jdbc_t");
            s.execute("CREATE TABLE jdbc_t (id serial PRIMARY KEY, name text UNIQUE, n bigint, j jsonb, b boolean)");
        }
        // Past prepareThreshold: pgjdbc switches to a named statement.
        step("prepared", () -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1, ? || 'x', ?::jsonb -> 'k', ?::numeric * 2, ?::timestamptz, ?::bytea")) {
                for (int i = 0; i < 7; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "s" + i);
                    ps.setObject(3, "{\"k\": " + i + "}", Types.OTHER);
                    ps.setBigDecimal(4, new java.math.BigDecimal("1.5"));
                    ps.setTimestamp(5, new Timestamp(1700000000000L + i * 1000L));
                    ps.setBytes(6, new byte[]{1, 2, (byte) i});
                    try (ResultSet rs = ps.executeQuery()) { p("prepared " + i + " " + rows(rs)); }
                }
            }
        });
        // A batch: many Parse/Bind/Execute before one Sync.
        step("batch", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (name, n, j, b) VALUES (?, ?, ?::jsonb, ?)")) {
                for (int i = 0; i < 20; i++) {
                    ps.setString(1, "n" + i);
                    ps.setLong(2, i * 10L);
                    ps.setString(3, "{\"i\": " + i + "}");
                    ps.setBoolean(4, i % 2 == 0);
                    ps.addBatch();
                }
                p("batch " + Arrays.toString(ps.executeBatch()));
            }
        });
        step("batch failing midway", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (name) VALUES (?)")) {
                for (String n : new String[]{"u1", "n3", "u2"}) { ps.setString(1, n); ps.addBatch(); }
                ps.executeBatch();
                p("batch failing midway: no error");
            } catch (BatchUpdateException e) {
                p("batch failing midway " + e.getSQLState() + " " + Arrays.toString(e.getUpdateCounts()));
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM jdbc_t")) { p("rows " + rows(rs)); }
        });
        step("generated keys", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (name) VALUES (?)", Statement.RETURN_GENERATED_KEYS)) {
                ps.setString(1, "gk");
                p("generated keys " + ps.executeUpdate());
                try (ResultSet rs = ps.getGeneratedKeys()) { p("generated keys " + rows(rs)); }
            }
        });
        step("transaction", () -> {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE jdbc_t SET n = n + 1 WHERE name = 'n1'");
                Savepoint sp = c.setSavepoint("sp1");
                try { s.executeUpdate("INSERT INTO jdbc_t (name) VALUES ('n2')"); } catch (SQLException e) { p("transaction " + err(e)); }
                c.rollback(sp);
                s.executeUpdate("UPDATE jdbc_t SET n = n + 1 WHERE name = 'n2'");
                c.commit();
                s.executeUpdate("UPDATE jdbc_t SET n = 999 WHERE name = 'n3'");
                c.rollback();
                try (ResultSet rs = s.executeQuery("SELECT name, n FROM jdbc_t WHERE name IN ('n1', 'n2', 'n3') ORDER BY name")) { p("transaction " + rows(rs)); }
                c.commit();
            } finally {
                c.setAutoCommit(true);
            }
        });
        // setFetchSize in a transaction: Execute with a row limit, PortalSuspended.
        step("fetch size", () -> {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT g, md5(g::text) FROM generate_series(1, 1000) g WHERE g > ?")) {
                ps.setFetchSize(7);
                ps.setInt(1, 985);
                try (ResultSet rs = ps.executeQuery()) { p("fetch size " + rows(rs)); }
            }
            try (Statement s = c.createStatement()) {
                s.setFetchSize(3);
                try (ResultSet rs = s.executeQuery("SELECT id FROM stripe.customers ORDER BY id")) { int n = 0; while (rs.next()) n++; p("fetch size customers " + (n > 3)); }
            }
            c.commit();
            c.setAutoCommit(true);
        });
        step("errors", () -> {
            try (Statement s = c.createStatement()) {
                try { s.executeQuery("SELECT 1/0"); } catch (SQLException e) { p("errors " + err(e)); }
                try { s.executeQuery("SELECT nosuch FROM jdbc_t"); } catch (SQLException e) { p("errors " + err(e)); }
                try (ResultSet rs = s.executeQuery("SELECT 42")) { p("errors then " + rows(rs)); }
            }
        });
        step("metadata", () -> {
            DatabaseMetaData md = c.getMetaData();
            try (ResultSet rs = md.getTables(null, "stripe", "cust%", new String[]{"TABLE"})) {
                StringBuilder b = new StringBuilder();
                while (rs.next()) b.append(rs.getString("TABLE_NAME")).append(",");
                p("metadata tables " + b);
            }
            try (ResultSet rs = md.getColumns(null, "stripe", "customers", "%")) {
                StringBuilder b = new StringBuilder();
                while (rs.next()) b.append(rs.getString("COLUMN_NAME")).append(":").append(rs.getString("TYPE_NAME")).append(",");
                p("metadata columns " + b);
            }
            try (ResultSet rs = md.getPrimaryKeys(null, "stripe", "customers")) { p("metadata primary key " + rows(rs)); }
        });
        step("copy", () -> {
            org.postgresql.copy.CopyManager cm = c.unwrap(org.postgresql.PGConnection.class).getCopyAPI();
            long n = cm.copyIn("COPY jdbc_t (name, n) FROM STDIN", new java.io.StringReader("c1\t1\nc2\t2\n"));
            java.io.StringWriter w = new java.io.StringWriter();
            cm.copyOut("COPY (SELECT name, n FROM jdbc_t WHERE name LIKE 'c%' ORDER BY 1) TO STDOUT", w);
            p("copy " + n + " " + w.toString().replace("\n", ";"));
        });
        if (first) {
            // CancelRequest through the proxy: setQueryTimeout, cancel().
            step("query timeout", () -> {
                try (Statement s = c.createStatement()) {
                    s.setQueryTimeout(1);
                    long t0 = System.nanoTime();
                    try { s.executeQuery("SELECT pg_sleep(10)"); p("query timeout: no error"); } catch (SQLException e) { p("query timeout " + e.getSQLState()); }
                    p("query timeout within 5 s " + ((System.nanoTime() - t0) / 1_000_000 < 5000));
                    s.setQueryTimeout(0);
                    try (ResultSet rs = s.executeQuery("SELECT 'after the timeout'")) { p(rows(rs)); }
                }
            });
            step("cancel", () -> {
                try (Statement s = c.createStatement()) {
                    Thread t = new Thread(() -> { try { Thread.sleep(300); s.cancel(); } catch (Exception e) { } });
                    t.start();
                    try { s.executeQuery("SELECT pg_sleep(10)"); p("cancel: no error"); } catch (SQLException e) { p("cancel " + e.getSQLState()); }
                    t.join();
                    try (ResultSet rs = s.executeQuery("SELECT 'after the cancel'")) { p(rows(rs)); }
                }
            });
            step("notify", () -> {
                try (Statement s = c.createStatement()) {
                    s.execute("LISTEN jdbc_channel");
                    s.execute("NOTIFY jdbc_channel, 'hello'");
                    org.postgresql.PGNotification[] ns = c.unwrap(org.postgresql.PGConnection.class).getNotifications(2000);
                    p("notify " + (ns == null ? 0 : ns.length) + " " + (ns != null && ns.length > 0 ? ns[0].getParameter() : ""));
                }
            });
        }
        try (Statement s = c.createStatement()) { s.execute("DROP TABLE jdbc_t"); }
    }

    static void write(Connection c, String tag, boolean first) throws Exception {
        List<String> ids = new ArrayList<>();
        // Past prepareThreshold: the write runs from a named statement.
        step("insert returning", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO stripe.customers (email, balance, metadata) VALUES (?, ?, ?::jsonb) RETURNING id, email, balance, metadata")) {
                for (int i = 0; i < 7; i++) {
                    ps.setString(1, tag + "-" + i + "@example.test");
                    ps.setLong(2, -i);
                    ps.setString(3, "{\"i\": \"" + i + "\"}");
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        ids.add(rs.getString(1));
                        p("insert returning " + rs.getString(1).startsWith("cus_") + " " + rs.getString(2) + " " + rs.getLong(3) + " " + rs.getString(4));
                    }
                }
            }
        });
        step("generated keys", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO stripe.customers (email) VALUES (?)", new String[]{"id"})) {
                ps.setString(1, tag + "-gk@example.test");
                p("generated keys " + ps.executeUpdate());
                try (ResultSet rs = ps.getGeneratedKeys()) { rs.next(); ids.add(rs.getString(1)); p("generated keys id " + rs.getString(1).startsWith("cus_")); }
            }
            // RETURN_GENERATED_KEYS: RETURNING *, every column.
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO stripe.customers (email) VALUES (?)", Statement.RETURN_GENERATED_KEYS)) {
                ps.setString(1, tag + "-gk2@example.test");
                p("generated keys " + ps.executeUpdate());
                try (ResultSet rs = ps.getGeneratedKeys()) {
                    rs.next();
                    ids.add(rs.getString("id"));
                    p("generated keys * " + rs.getString("id").startsWith("cus_") + " " + rs.getString("email") + " " + (rs.getTimestamp("created") != null) + " " + rs.getMetaData().getColumnCount());
                }
            }
        });
        step("batch update", () -> {
            try (PreparedStatement ps = c.prepareStatement("UPDATE stripe.customers SET description = ? WHERE id = ?")) {
                for (int i = 0; i < ids.size(); i++) { ps.setString(1, "batch " + i); ps.setString(2, ids.get(i)); ps.addBatch(); }
                p("batch update " + Arrays.toString(ps.executeBatch()));
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM stripe.customers WHERE email LIKE ? AND description LIKE 'batch %'")) {
                ps.setString(1, tag + "-%");
                try (ResultSet rs = ps.executeQuery()) { p("batch update read " + rows(rs)); }
            }
        });
        step("batch insert", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO stripe.customers (email, name) VALUES (?, ?)")) {
                for (int i = 0; i < 4; i++) { ps.setString(1, tag + "-b" + i + "@example.test"); ps.setString(2, "B" + i); ps.addBatch(); }
                p("batch insert " + Arrays.toString(ps.executeBatch()));
            }
        });
        // Stripe refuses the second row: the batch stops there (the first
        // row reached Stripe; ROLLBACK can't undo it). pgjdbc reports
        // every row of the pipeline as failed; the proxy's notice, a
        // warning on the statement, says the first one stays.
        step("batch refused", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO stripe.customers (email, tax_exempt) VALUES (?, ?)")) {
                String[] te = {"none", "bogus", "exempt"};
                for (int i = 0; i < 3; i++) { ps.setString(1, tag + "-r" + i + "@example.test"); ps.setString(2, te[i]); ps.addBatch(); }
                try {
                    ps.executeBatch();
                    p("batch refused: no error");
                } catch (BatchUpdateException e) {
                    p("batch refused " + e.getSQLState() + " " + Arrays.toString(e.getUpdateCounts()));
                }
                SQLWarning w = ps.getWarnings();
                p("batch refused warning " + (w == null ? "none" : w.getSQLState() + " " + w.getMessage()));
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT email FROM stripe.customers WHERE email LIKE ? ORDER BY email")) {
                ps.setString(1, tag + "-r%");
                try (ResultSet rs = ps.executeQuery()) { p("batch refused read " + rows(rs)); }
            }
        });
        step("transaction", () -> {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO stripe.customers (email) VALUES ('" + tag + "-tx@example.test')");
                SQLWarning w = s.getWarnings();
                p("transaction warning " + (w == null ? "none" : w.getSQLState() + " " + w.getMessage()));
                Savepoint sp = c.setSavepoint();
                try { s.executeUpdate("INSERT INTO stripe.customers (email, tax_exempt) VALUES ('" + tag + "-x@example.test', 'bogus')"); } catch (SQLException e) { p("transaction refused " + e.getSQLState()); }
                c.rollback(sp);
                try (ResultSet rs = s.executeQuery("SELECT count(*) FROM stripe.customers WHERE email = '" + tag + "-tx@example.test'")) { p("transaction read " + rows(rs)); }
                try { s.executeUpdate("INSERT INTO stripe.customers (email, tax_exempt) VALUES ('" + tag + "-x@example.test', 'bogus')"); } catch (SQLException e) { p("transaction refused " + e.getSQLState()); }
                // autosave=always rolls back to its own savepoint: the
                // transaction goes on; otherwise it is aborted.
                try { s.executeUpdate("INSERT INTO stripe.customers (email) VALUES ('" + tag + "-y@example.test')"); p("transaction after refusal: inserted"); }
                catch (SQLException e) { p("transaction after refusal " + e.getSQLState()); }
                c.rollback();
            } finally {
                c.setAutoCommit(true);
            }
        });
        // setFetchSize on a write with RETURNING, in a transaction: the
        // rows come in pieces (PortalSuspended).
        step("fetch size", () -> {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("UPDATE stripe.customers SET name = 'fs' WHERE email LIKE ? RETURNING email")) {
                ps.setFetchSize(2);
                ps.setString(1, tag + "-b%");
                try (ResultSet rs = ps.executeQuery()) {
                    List<String> l = new ArrayList<>();
                    while (rs.next()) l.add(rs.getString(1));
                    Collections.sort(l);
                    p("fetch size " + l);
                }
            }
            c.commit();
            c.setAutoCommit(true);
        });
        step("max rows", () -> {
            try (PreparedStatement ps = c.prepareStatement("UPDATE stripe.customers SET name = 'mr' WHERE email LIKE ? RETURNING email")) {
                ps.setMaxRows(1);
                ps.setString(1, tag + "-b%");
                try (ResultSet rs = ps.executeQuery()) { int n = 0; while (rs.next()) n++; p("max rows " + n); }
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM stripe.customers WHERE name = 'mr' AND email LIKE '" + tag + "-b%'")) { p("max rows updated " + rows(rs)); }
        });
        // pgjdbc splits a multi-statement string into statements of their
        // own (extended protocol); simple mode sends it as one Query.
        step("multi-statement", () -> {
            try (Statement s = c.createStatement()) {
                boolean r = s.execute("INSERT INTO stripe.customers (email) VALUES ('" + tag + "-m1@example.test'); INSERT INTO stripe.customers (email) VALUES ('" + tag + "-m2@example.test') RETURNING email");
                StringBuilder b = new StringBuilder("multi-statement");
                while (true) {
                    if (r) { try (ResultSet rs = s.getResultSet()) { b.append(" rows ").append(rows(rs)); } }
                    else { int u = s.getUpdateCount(); if (u == -1) break; b.append(" count ").append(u); }
                    r = s.getMoreResults();
                }
                p(b.toString());
            }
        });
        step("jsonb object", () -> {
            org.postgresql.util.PGobject j = new org.postgresql.util.PGobject();
            j.setType("jsonb");
            j.setValue("{\"k\":\"v\"}");
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO stripe.customers (email, metadata, balance, name) VALUES (?, ?, ?, ?) RETURNING metadata, balance, delinquent, livemode, name")) {
                ps.setString(1, tag + "-o@example.test");
                ps.setObject(2, j);
                ps.setObject(3, 7, Types.BIGINT);
                ps.setNull(4, Types.VARCHAR);
                try (ResultSet rs = ps.executeQuery()) { p("jsonb object " + rows(rs)); }
            }
        });
        step("errors", () -> {
            try (Statement s = c.createStatement()) {
                try { s.executeUpdate("INSERT INTO stripe.customers (nonsense) VALUES (1)"); } catch (SQLException e) { p("errors " + e.getSQLState()); }
                try { s.executeUpdate("DELETE FROM stripe.prices WHERE id = 'price_none'"); } catch (SQLException e) { p("errors " + e.getSQLState() + " " + e.getMessage().split("\n")[0]); }
                try { s.executeUpdate("UPDATE stripe.customers SET name = 'x' WHERE id = 'cus_none'"); p("errors none matched"); } catch (SQLException e) { p("errors " + e.getSQLState()); }
                try (ResultSet rs = s.executeQuery("SELECT 1")) { p("errors then " + rows(rs)); }
            }
        });
        if (first) {
            // An updatable ResultSet: pgjdbc writes INSERT/UPDATE/DELETE of
            // its own from the row.
            step("updatable result set", () -> {
                try (Statement s = c.createStatement(ResultSet.TYPE_SCROLL_INSENSITIVE, ResultSet.CONCUR_UPDATABLE)) {
                    try (ResultSet rs = s.executeQuery("SELECT id, email, name FROM stripe.customers WHERE email = '" + tag + "-u@example.test'")) {
                        rs.moveToInsertRow();
                        rs.updateString("email", tag + "-u@example.test");
                        rs.updateString("name", "Inserted");
                        rs.insertRow();
                    }
                    try (ResultSet rs = s.executeQuery("SELECT id, email, name FROM stripe.customers WHERE email = '" + tag + "-u@example.test'")) {
                        while (rs.next()) { rs.updateString("name", "Renamed"); rs.updateRow(); p("updatable result set " + rs.getString("name")); }
                    }
                    try (ResultSet rs = s.executeQuery("SELECT id, email, name FROM stripe.customers WHERE email = '" + tag + "-u@example.test'")) {
                        while (rs.next()) { rs.deleteRow(); p("updatable result set deleted"); }
                    }
                }
            });
        }
        step("delete", () -> {
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM stripe.customers WHERE email LIKE ? RETURNING email")) {
                ps.setString(1, tag + "-%");
                try (ResultSet rs = ps.executeQuery()) { int n = 0; while (rs.next()) n++; p("delete " + n); }
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM stripe.customers WHERE email LIKE '" + tag + "-%'")) { p("delete left " + rows(rs)); }
        });
    }

    // slow: Stripe takes 3 s; a 1 s query timeout cancels the write.
    static void slow(Connection c, String tag) throws Exception {
        step("query timeout", () -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO stripe.customers (email) VALUES (?) RETURNING id")) {
                ps.setQueryTimeout(1);
                ps.setString(1, tag + "-slow@example.test");
                long t0 = System.nanoTime();
                try { ps.executeQuery(); p("query timeout: no error"); } catch (SQLException e) { p("query timeout " + e.getSQLState()); }
                p("query timeout within 2.5 s " + ((System.nanoTime() - t0) / 1_000_000 < 2500));
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 'after the timeout', count(*) FROM pg_sleep(0.3)")) { p(rows(rs)); }
        });
    }
}
