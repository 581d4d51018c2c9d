package server

import (
	"net"

	"github.com/pgstripe/pgstripe/metrics"
)

// countingListener counts accepted connections for
// pgstripe_proxy_connections_total. It hands the proxy the connection as
// accepted (the proxy needs the *net.TCPConn for TCP_NODELAY and its
// low-latency reads).
type countingListener struct{ net.Listener }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		metrics.ProxyConnectionsTotal.Inc()
	}
	return c, err
}
