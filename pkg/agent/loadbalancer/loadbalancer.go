// Package loadbalancer is the agent's client-side load balancer: a TCP
// proxy on loopback in front of every known server, so the kubelet,
// kube-proxy and flannel keep one stable address while servers come, go or
// fail. TLS passes through untouched; the servers' certificates carry
// 127.0.0.1, so clients verify them as usual.
package loadbalancer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// LoadBalancer forwards connections to the first healthy server, in order.
type LoadBalancer struct {
	listener net.Listener

	mu      sync.Mutex
	servers []string        // host:port, preferred first
	healthy map[string]bool // last health check result
	conns   map[net.Conn]string

	// DialTimeout bounds one attempt to reach a server.
	DialTimeout time.Duration
	// CheckInterval is how often every server's /ping is probed.
	CheckInterval time.Duration
}

// New listens on address (e.g. 127.0.0.1:6444) for the given servers
// (host:port).
func New(address string, servers []string) (*LoadBalancer, error) {
	if len(servers) == 0 {
		return nil, errors.New("load balancer: no server address")
	}
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("load balancer: listen on %s: %w; another skiff server or agent runs on this host (one node per host)", address, err)
	}
	lb := &LoadBalancer{
		listener:      ln,
		healthy:       map[string]bool{},
		conns:         map[net.Conn]string{},
		DialTimeout:   5 * time.Second,
		CheckInterval: 5 * time.Second,
	}
	lb.SetServers(servers)
	return lb, nil
}

// Address is where clients connect.
func (lb *LoadBalancer) Address() string { return lb.listener.Addr().String() }

// Servers returns the current server list, preferred first.
func (lb *LoadBalancer) Servers() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return slices.Clone(lb.servers)
}

// SetServers replaces the server list. Servers are assumed healthy until a
// check or a dial says otherwise; connections to removed servers are
// closed so their clients reconnect through a current one.
func (lb *LoadBalancer) SetServers(servers []string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var list []string
	for _, s := range servers {
		if s != "" && !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	if slices.Equal(list, lb.servers) {
		return
	}
	logrus.Infof("load balancer %s: servers %v", lb.listener.Addr(), list)
	for _, s := range list {
		if _, known := lb.healthy[s]; !known {
			lb.healthy[s] = true
		}
	}
	for c, s := range lb.conns {
		if !slices.Contains(list, s) {
			c.Close()
		}
	}
	lb.servers = list
}

// Run accepts connections and checks the servers until ctx is cancelled.
func (lb *LoadBalancer) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		lb.listener.Close()
		lb.mu.Lock()
		for c := range lb.conns {
			c.Close()
		}
		lb.mu.Unlock()
	}()
	go lb.checkLoop(ctx)
	for {
		conn, err := lb.listener.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("load balancer: accept: %w", err)
		}
		go lb.forward(ctx, conn)
	}
}

// candidates orders servers: healthy ones first, keeping preference order.
func (lb *LoadBalancer) candidates() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var good, bad []string
	for _, s := range lb.servers {
		if lb.healthy[s] {
			good = append(good, s)
		} else {
			bad = append(bad, s)
		}
	}
	return append(good, bad...)
}

func (lb *LoadBalancer) setHealthy(server string, ok bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.healthy[server] != ok {
		if ok {
			logrus.Infof("load balancer: server %s is reachable again", server)
		} else {
			logrus.Warnf("load balancer: server %s is unreachable", server)
		}
	}
	lb.healthy[server] = ok
	if !ok {
		// Clients stuck on a dead server (half-open connections) would wait
		// for their own timeouts; close them so they reconnect now.
		for c, s := range lb.conns {
			if s == server {
				c.Close()
			}
		}
	}
}

func (lb *LoadBalancer) forward(ctx context.Context, client net.Conn) {
	var upstream net.Conn
	var server string
	dialer := net.Dialer{Timeout: lb.DialTimeout}
	for _, s := range lb.candidates() {
		c, err := dialer.DialContext(ctx, "tcp", s)
		if err == nil {
			upstream, server = c, s
			break
		}
		lb.setHealthy(s, false)
	}
	if upstream == nil {
		logrus.Warnf("load balancer: no server reachable for a connection from %s", client.RemoteAddr())
		client.Close()
		return
	}
	lb.mu.Lock()
	lb.conns[client] = server
	lb.conns[upstream] = server
	lb.mu.Unlock()
	defer func() {
		lb.mu.Lock()
		delete(lb.conns, client)
		delete(lb.conns, upstream)
		lb.mu.Unlock()
	}()
	pipe(client, upstream)
}

// pipe copies both ways until either side closes, then closes both.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	copyClose := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go copyClose(a, b)
	go copyClose(b, a)
	wg.Wait()
}

func (lb *LoadBalancer) checkLoop(ctx context.Context) {
	client := &http.Client{
		Timeout: 3 * time.Second,
		// Only liveness is asked; identity is checked by the real clients.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
	}
	ticker := time.NewTicker(lb.CheckInterval)
	defer ticker.Stop()
	for {
		for _, s := range lb.Servers() {
			resp, err := client.Get("https://" + s + "/ping")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if resp != nil {
				resp.Body.Close()
			}
			lb.setHealthy(s, ok)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
