package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/daemon"
	"github.com/peerctl/peerctl/internal/cluster"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and
// localhost, and its key, as PEM files in dir.
func writeSelfSigned(tb testing.TB, dir string) (cert, key string) {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peerctl test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

// Two daemons serving HTTPS with a token and a keyring: the CLI reaches
// them with https:// in --addr, --ca and --token, and says what is missing
// when one is; the daemons replicate and forward to each other over
// HTTPS. Reference: issue 10, item 2 (TLS).
func TestTLSAPIWithCA(t *testing.T) {
	t.Setenv("PEERCTL_TOKEN", "")
	t.Setenv("PEERCTL_CA", "")
	const token = "tls-test-token"
	const key = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s="
	cert, pkey := writeSelfSigned(t, t.TempDir())
	var agents []*daemon.Agent
	for i := 0; i < 2; i++ {
		cfg := daemon.DefaultConfig()
		cfg.Name = fmt.Sprintf("n%d", i+1)
		cfg.Bind, cfg.API, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
		cfg.Token, cfg.EncryptKey = token, key
		cfg.APITLSCert, cfg.APITLSKey = cert, pkey
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if i > 0 {
			cfg.Join = []string{agents[0].GossipAddr()}
		}
		a, err := daemon.Create(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Shutdown() })
		agents = append(agents, a)
	}
	addr := "https://" + agents[0].APIAddr()
	waitCLI(t, 20*time.Second, "two members alive over HTTPS", func() error {
		r := run(t, addr, "", "--ca", cert, "--token", token, "members")
		if r.err != nil || strings.Count(r.stdout, "alive") != 2 {
			return fmt.Errorf("members: %v", r.err)
		}
		return nil
	})
	mustRun(t, addr, "", "--ca", cert, "--token", token, "put", "k", "over-tls")
	waitCLI(t, 10*time.Second, "k on n2 through ?node= over HTTPS", func() error {
		r := run(t, addr, "", "--ca", cert, "--token", token, "get", "k", "--node", "n2")
		if r.err != nil || !strings.Contains(r.stdout, "over-tls") {
			return fmt.Errorf("get --node n2: %v", r.err)
		}
		return nil
	})
	if out := mustRun(t, addr, "", "--ca", cert, "--token", token, "keyring", "list"); !strings.Contains(out, key) || !strings.Contains(out, "2/2") {
		t.Errorf("keyring list = %q; want the key on 2/2 members", out)
	}
	for _, tc := range []struct {
		addr string
		args []string
		want string
	}{
		{addr, []string{"--ca", cert, "info"}, "the daemon wants a token: set --token or PEERCTL_TOKEN"},
		{addr, []string{"--token", token, "info"}, "--ca"},
		{agents[0].APIAddr(), []string{"--token", token, "info"}, "serves HTTPS: use --addr https://"},
		{addr, []string{"--ca", filepath.Join(t.TempDir(), "none.pem"), "info"}, "--ca"},
	} {
		r := run(t, tc.addr, "", tc.args...)
		if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
			t.Errorf("peerctl --addr %s %v: %v; want an error containing %q", tc.addr, tc.args, r.err, tc.want)
		}
	}
}

// waitCLI polls cond every 100 ms until it returns nil (cluster.WaitErr),
// and fails the test with cond's last error if d passes first.
func waitCLI(tb testing.TB, d time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := cluster.WaitErr(context.Background(), d, 100*time.Millisecond, cond); err != nil {
		tb.Fatalf("%s: not within %v: %v", what, d, err)
	}
}
