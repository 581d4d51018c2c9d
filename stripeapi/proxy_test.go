package stripeapi

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/logtest"
)

// forwardProxy is a forward proxy such as HTTPS_PROXY names. A CONNECT is
// answered with connectStatus, or with 0 tunnelled to the address it asks
// for; a plain-http request is forwarded and then answered with a 502 of
// the proxy's own, as when the upstream connection broke after Stripe read
// the request.
type forwardProxy struct {
	*httptest.Server
	connects, plains atomic.Int32
	auth             atomic.Value // string: the last Proxy-Authorization
	mu               sync.Mutex
	conns            []net.Conn // hijacked and upstream, closed at cleanup
}

func newForwardProxy(t *testing.T, connectStatus int) *forwardProxy {
	t.Helper()
	p := &forwardProxy{}
	p.auth.Store("")
	upstream := &http.Transport{} // no proxy of its own
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.auth.Store(r.Header.Get("Proxy-Authorization"))
		if r.Method != http.MethodConnect {
			p.plains.Add(1)
			out, err := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body)
			if err == nil {
				out.Header = r.Header.Clone()
				out.Header.Del("Proxy-Authorization")
				var resp *http.Response
				if resp, err = upstream.RoundTrip(out); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
			return
		}
		p.connects.Add(1)
		if connectStatus != 0 {
			w.WriteHeader(connectStatus)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			t.Error(err)
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, conn, up)
		p.mu.Unlock()
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() {
			io.Copy(up, buf)
			up.Close()
		}()
		go func() {
			io.Copy(conn, up)
			conn.Close()
		}()
	}))
	t.Cleanup(func() {
		p.Close()
		upstream.CloseIdleConnections()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

// Behind an HTTP(S) proxy, a call none of whose attempts got a connection
// to Stripe (the proxy is down, or refuses the CONNECT because it can't
// reach Stripe) sent nothing: it fails as NotSent, and an interactive one
// within UnreachedBudget. Once a request went to the proxy or through the
// tunnel, the proxy's 502 or a dropped tunnel may come after Stripe read
// it: not NotSent, and the full schedule. The API key, here also the
// proxy password, shows in no error and no log line.
func TestNotSentBehindProxy(t *testing.T) {
	e, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	stripeTLS := httptest.NewTLSServer(e)
	t.Cleanup(stripeTLS.Close)
	stripePlain := httptest.NewServer(e)
	t.Cleanup(stripePlain.Close)
	// Stripe reads the request, and the connection drops before it answers.
	var dropped atomic.Int32
	dropTLS := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropped.Add(1)
		io.Copy(io.Discard, r.Body)
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(dropTLS.Close)

	customers := func() int { return len(e.Objects("customers")) }
	const fullSchedule = 9 // default MaxRetries 8, plus the first attempt
	for _, tc := range []struct {
		name    string
		connect int  // the proxy's CONNECT answer (0: tunnel)
		down    bool // the proxy is not listening
		// untrusted: the client doesn't trust the certificate it gets
		// through the tunnel (an intercepting proxy's, say).
		untrusted bool
		base      string // Stripe's URL
		notSent   bool
		ok        bool
		// stripeSaw counts the requests that reached the upstream.
		stripeSaw func() int
	}{
		{name: "tunnel to Stripe", base: stripeTLS.URL, ok: true},
		{name: "CONNECT 502", connect: 502, base: stripeTLS.URL, notSent: true},
		{name: "CONNECT 503", connect: 503, base: stripeTLS.URL, notSent: true},
		{name: "CONNECT 504", connect: 504, base: stripeTLS.URL, notSent: true},
		{name: "tunnel, certificate not trusted", base: stripeTLS.URL, untrusted: true, notSent: true},
		{name: "proxy down, https", down: true, base: stripeTLS.URL, notSent: true},
		{name: "proxy down, http", down: true, base: stripePlain.URL, notSent: true},
		{name: "tunnel dropped after the request", base: dropTLS.URL,
			stripeSaw: func() int { return int(dropped.Load()) }},
		{name: "plain http, proxy answers 502", base: stripePlain.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newForwardProxy(t, tc.connect)
			proxyURL, err := url.Parse(p.URL)
			if err != nil {
				t.Fatal(err)
			}
			if tc.down {
				proxyURL, err = url.Parse(refusedURL(t))
				if err != nil {
					t.Fatal(err)
				}
			}
			proxyURL.User = url.UserPassword("pgstripe", testKey)
			tr := stripeTLS.Client().Transport.(*http.Transport).Clone()
			if tc.untrusted {
				tr = http.DefaultTransport.(*http.Transport).Clone()
			}
			tr.Proxy = http.ProxyURL(proxyURL)
			t.Cleanup(tr.CloseIdleConnections)
			var logs logtest.Buffer
			c, err := New(Config{APIKey: testKey, BaseURL: tc.base, RateLimit: 1000, Transport: tr,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			var slept time.Duration
			c.sleep = func(ctx context.Context, d time.Duration) error { slept += d; return ctx.Err() }
			before, requestsBefore := customers(), e.Stats().Total

			_, err = c.Post(WithPriority(context.Background(), Interactive), "/v1/customers",
				url.Values{"email": {"proxy@example.com"}}, "")

			if tc.ok {
				if err != nil {
					t.Fatalf("through the tunnel: %v", err)
				}
				if customers() != before+1 {
					t.Errorf("the write did not reach the emulator")
				}
			} else if err == nil {
				t.Fatal("no error")
			}
			if got := NotSent(err); got != tc.notSent {
				t.Errorf("NotSent(%v) = %v, want %v", err, got, tc.notSent)
			}
			var ns *NotSentError
			switch {
			case tc.notSent && errors.As(err, &ns):
				if ns.Attempts < 2 || ns.Attempts >= fullSchedule || slept > UnreachedBudget {
					t.Errorf("%d attempts after %v of backoff, want 2..8 within %v", ns.Attempts, slept, UnreachedBudget)
				}
				if !Retryable(err) {
					t.Errorf("not retryable: %v", err)
				}
				if !tc.down && int(p.connects.Load()) != ns.Attempts {
					t.Errorf("proxy saw %d CONNECTs for %d attempts", p.connects.Load(), ns.Attempts)
				}
				if n := e.Stats().Total - requestsBefore; n != 0 || customers() != before {
					t.Errorf("Stripe saw %d requests of a call reported not sent", n)
				}
			case tc.stripeSaw != nil:
				if n := tc.stripeSaw(); n != fullSchedule {
					t.Errorf("Stripe saw %d attempts, want the full schedule (%d)", n, fullSchedule)
				}
			case !tc.ok && !tc.notSent:
				// The proxy forwarded it: the customer exists although
				// every answer was the proxy's 502.
				var se *Error
				if !errors.As(err, &se) || se.HTTPStatus != 502 || !se.NotStripe {
					t.Errorf("err = %T %v, want a 502 marked NotStripe", err, err)
				}
				if customers() != before+1 {
					t.Errorf("the forwarded write did not reach the emulator")
				}
				if n := p.plains.Load(); n != fullSchedule {
					t.Errorf("proxy saw %d requests, want the full schedule (%d)", n, fullSchedule)
				}
			}

			basic := base64.StdEncoding.EncodeToString([]byte("pgstripe:" + testKey))
			if !tc.down {
				if got := p.auth.Load().(string); got != "Basic "+basic {
					t.Errorf("Proxy-Authorization = %q: the proxy password was not on this path", got)
				}
			}
			if !tc.ok && !strings.Contains(logs.String(), "retrying") {
				t.Errorf("no retry logged: %s", logs.String())
			}
			for _, secret := range []string{testKey, basic} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error shows %q: %v", secret, err)
				}
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log shows %q:\n%s", secret, logs.String())
				}
			}
		})
	}
}

// A client whose transport is not an *http.Transport keeps the typed
// test: a "proxyconnect" dial error (what an http.Transport behind a
// wrapper fails with when the proxy is down) is not sent, while an error
// without a type (a refused CONNECT, seen through the wrapper) is
// uncertain.
func TestWrappedTransportProxyErrors(t *testing.T) {
	proxyURL, err := url.Parse(refusedURL(t))
	if err != nil {
		t.Fatal(err)
	}
	down := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	refusing := newForwardProxy(t, http.StatusBadGateway)
	refusingURL, err := url.Parse(refusing.URL)
	if err != nil {
		t.Fatal(err)
	}
	refuses := &http.Transport{Proxy: http.ProxyURL(refusingURL)}
	for _, tc := range []struct {
		name    string
		tr      *http.Transport
		notSent bool
	}{{"proxy down", down, true}, {"CONNECT refused", refuses, false}} {
		t.Cleanup(tc.tr.CloseIdleConnections)
		c, err := New(Config{APIKey: testKey, BaseURL: "https://127.0.0.1:1", RateLimit: 1000, MaxRetries: -1,
			Transport: roundTripFunc(tc.tr.RoundTrip)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Post(context.Background(), "/v1/customers", nil, "k")
		if err == nil || NotSent(err) != tc.notSent {
			t.Errorf("%s: NotSent(%v) = %v, want %v", tc.name, err, NotSent(err), tc.notSent)
		}
	}
}

// A protocol registered on the *http.Transport (RegisterProtocol) takes
// the request before the Transport asks for a connection of its own, and
// reports none (no GetConn, no GotConn) although it may write the request.
// Its failure after Stripe read the request is not "not sent".
func TestRegisteredProtocolWriteIsSent(t *testing.T) {
	srv, saw := hangUpServer(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	// A minimal alternate HTTP/1 implementation on a conn of its own.
	tr.RegisterProtocol("http", roundTripFunc(func(r *http.Request) (*http.Response, error) {
		var d net.Dialer
		conn, err := d.DialContext(r.Context(), "tcp", r.URL.Host)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		if err := r.Write(conn); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), r)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		return resp, nil
	}))
	c, err := New(Config{APIKey: testKey, BaseURL: srv.URL, RateLimit: 1000, MaxRetries: -1, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Post(WithPriority(context.Background(), Interactive), "/v1/customers", nil, "k")
	if err == nil {
		t.Fatal("no error")
	}
	if saw.Load() != 1 {
		t.Fatalf("server saw %d requests, want 1", saw.Load())
	}
	if NotSent(err) {
		t.Errorf("Stripe read the request, yet NotSent(%v)", err)
	}
}
