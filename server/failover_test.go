package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/pgtest"
)

// TestProxyFollowsFailover: with DATABASE_URL naming two hosts
// (target_session_attrs=read-write), the proxy no longer forwards every
// session to the host reached at start-up: once that host is down, new
// sessions go to the other, without a restart of pgstripe.
func TestProxyFollowsFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cs [2]*pgcluster.Cluster
	for i := range cs {
		c, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		cs[i] = c
	}
	a, b := cs[0], cs[1]
	dbURL := fmt.Sprintf("postgres://postgres@%s,%s/postgres?sslmode=disable&target_session_attrs=read-write", a.Addr(), b.Addr())
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	proxyAddr, _, err := serveEnv(t, dbURL, base)
	if err != nil {
		t.Fatal(err)
	}
	port := func() (int, error) {
		conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", proxyAddr))
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		var p int
		err = conn.QueryRow(ctx, `SELECT pg_catalog.inet_server_port()`).Scan(&p)
		return p, err
	}
	if p, err := port(); err != nil || p != a.Port {
		t.Fatalf("before the failover: port %d, %v; want %d", p, err, a.Port)
	}
	a.Kill()
	for range 2 {
		if p, err := port(); err != nil || p != b.Port {
			t.Fatalf("first host down: port %d, %v; want %d", p, err, b.Port)
		}
	}
}

// TestServeTLSRequired: PGSTRIPE_TLS_REQUIRED reaches the proxy:
// a client without TLS gets 28000, one with TLS is served.
func TestServeTLSRequired(t *testing.T) {
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "p.crt"), filepath.Join(dir, "p.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logs := &logtest.Buffer{}
	opts := Options{Config: &config.Config{DatabaseURL: dbURL, StripeAPIKey: "sk_test_review", StripeAPIBase: base,
		Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", RateLimit: 200, PollInterval: 100 * time.Millisecond,
		TLSCert: cert, TLSKey: key, TLSRequired: true},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Ready:  func(p, _ string) { ready <- p }}
	opts.Instance.Instance, opts.Instance.Host = "tls", "h"
	go func() { done <- Run(ctx, opts) }()
	defer func() { cancel(); <-done }()
	var proxyAddr string
	select {
	case proxyAddr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(60 * time.Second):
		t.Fatal("Run never became ready")
	}
	via := strings.Replace(dbURL, pgtest.Cluster(t).Addr(), proxyAddr, 1)
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	_, err = pgx.Connect(tctx, via) // sslmode=disable
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" {
		t.Errorf("without TLS: %v, want 28000", err)
	}
	conn, err := pgx.Connect(tctx, strings.Replace(via, "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatalf("with TLS: %v", err)
	}
	defer conn.Close(tctx)
	var n int
	if err := conn.QueryRow(tctx, `SELECT 7`).Scan(&n); err != nil || n != 7 {
		t.Errorf("query over TLS: %d, %v", n, err)
	}
}
