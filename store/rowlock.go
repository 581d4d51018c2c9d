package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
)

// RowKey names an object by table and key (its id; a customer's for
// upcoming_invoices).
type RowKey struct{ Table, ID string }

// WriteSet names the objects a transaction is about to write, by table.
type WriteSet map[string]*tableWrites

type tableWrites struct{ upserts, deletes []string }

// Add records that id of table is to be upserted, or deleted (del).
func (w WriteSet) Add(table, id string, del bool) {
	tw := w[table]
	if tw == nil {
		tw = &tableWrites{}
		w[table] = tw
	}
	if del {
		tw.deletes = append(tw.deletes, id)
	} else {
		tw.upserts = append(tw.upserts, id)
	}
}

// LockSite is where an object's held row was found: the rows of Table
// whose Col is the object's key, locked in Strength.
type LockSite struct{ Table, Col, Strength string }

// BatchSender is a transaction, or a pool, whose batch runs as one
// implicit transaction (its locks go at its end).
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// LockRows locks, inside tx and without waiting, the rows that writing w
// changes: each object's own row (FOR NO KEY UPDATE for an upsert, as
// INSERT … ON CONFLICT DO UPDATE locks it, so a foreign key of the user's
// referencing it is no obstacle; FOR UPDATE for a delete), its children
// (nested lists, replaced or removed) and, for a delete, the rows it owns
// (Owned). It returns the objects of which some row is held by another
// transaction (a user's SELECT … FOR UPDATE left idle in psql, a long
// UPDATE), keyed by the object, not by the child row; the rows it locked
// stay locked until tx ends, so nothing takes them before the writes.
// Sync writers, which must never wait for a user's transaction, leave
// those objects out and fetch them again later.
func LockRows(ctx context.Context, tx BatchSender, w WriteSet) (map[RowKey]LockSite, error) {
	tables := make([]string, 0, len(w))
	for t := range w {
		tables = append(tables, t)
	}
	LockOrder(tables) // never waits, but keeps runs repeatable
	// One round trip for all of them.
	type check struct {
		table string
		site  LockSite
	}
	var checks []check
	batch := &pgx.Batch{}
	for _, name := range tables {
		t, ok := schema.Lookup(name)
		if !ok {
			continue
		}
		tw := w[name]
		for _, op := range []struct {
			ids []string
			del bool
		}{{tw.upserts, false}, {tw.deletes, true}} {
			if len(op.ids) == 0 {
				continue
			}
			strength := "NO KEY UPDATE"
			if op.del {
				strength = "UPDATE"
			}
			sites := []LockSite{{t.Name, t.Key[len(t.Key)-1], strength}}
			for _, n := range t.Nested {
				if ct, ok := schema.Lookup(n.Table); ok && ct.Parent != nil {
					sites = append(sites, LockSite{ct.Name, ct.Parent.Column, "UPDATE"})
				}
			}
			if op.del {
				for _, d := range Owned[t.Name] {
					sites = append(sites, LockSite{d.Table, "customer", "UPDATE"})
				}
			}
			for _, s := range sites {
				q, err := heldRowsSQL(s)
				if err != nil {
					return nil, err
				}
				batch.Queue(q, op.ids)
				checks = append(checks, check{name, s})
			}
		}
	}
	if len(checks) == 0 {
		return nil, nil
	}
	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	var busy map[RowKey]LockSite
	for _, c := range checks {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("store: lock rows of %s: %w", c.site.Table, err)
		}
		held, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("store: lock rows of %s: %w", c.site.Table, err)
		}
		for _, id := range held {
			k := RowKey{c.table, id}
			if _, ok := busy[k]; ok {
				continue
			}
			if busy == nil {
				busy = map[RowKey]LockSite{}
			}
			busy[k] = c.site
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("store: lock rows: %w", err)
	}
	return busy, nil
}

// heldRowsSQL locks the rows of s.Table whose s.Col is among $1, skipping
// those another transaction holds, and returns the values of s.Col with a
// row skipped. One statement, one snapshot: a row it sees but could not
// lock is held.
func heldRowsSQL(s LockSite) (string, error) {
	t, ok := schema.Lookup(s.Table)
	if !ok {
		return "", fmt.Errorf("store: lock rows: unknown table %q", s.Table)
	}
	keys := make([]string, len(t.Key))
	for i, k := range t.Key {
		keys[i] = schema.Ident(k)
	}
	key := strings.Join(keys, ", ")
	return fmt.Sprintf(`WITH mine AS MATERIALIZED (
  SELECT %[1]s FROM %[2]s WHERE %[3]s = ANY($1::text[]) FOR %[4]s SKIP LOCKED
)
SELECT DISTINCT %[3]s FROM %[2]s WHERE %[3]s = ANY($1::text[]) AND (%[1]s) NOT IN (SELECT %[1]s FROM mine)`,
		key, t.QualifiedName(), schema.Ident(s.Col), s.Strength), nil
}
