package connect_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
)

func TestMain(m *testing.M) {
	fleettest.SetCredentials()
	os.Exit(m.Run())
}

// writeCerts makes a CA and a server certificate for 127.0.0.1.
func writeCerts(t *testing.T) (cert, key, ca string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "s3fleet test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	return write("server.crt", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER), write("ca.crt", "CERTIFICATE", caDER)
}

// TestRedisTLSAndPassword: rediss:// with a CA file and a password reaches
// a real redis-server that speaks only TLS; without the CA, or with the
// wrong password, it fails at once with an error that hides the password;
// and a whole job runs over that connection.
func TestRedisTLSAndPassword(t *testing.T) {
	cert, key, ca := writeCerts(t)
	_, url := testenv.StartRedisTLS(t, cert, key, ca, "--requirepass", "s3cr3t-pw", "--user", "fleet", "on", ">fleet-pw", "~*", "&*", "+@all")
	withPass := strings.Replace(url, "rediss://", "rediss://:s3cr3t-pw@", 1)
	ctx := context.Background()
	cfg := config.Defaults()
	cfg.ConnectTimeout = 3 * time.Second

	for _, tc := range []struct {
		name, url, ca, want string
	}{
		{"password and CA", withPass, ca, ""},
		{"ACL user", strings.Replace(url, "rediss://", "rediss://fleet:fleet-pw@", 1), ca, ""},
		{"no CA", withPass, "", "certificate"},
		{"wrong password", strings.Replace(url, "rediss://", "rediss://:nope@", 1), ca, "WRONGPASS"},
		{"no password", url, ca, "NOAUTH"},
		{"plain redis:// to a TLS port", strings.Replace(withPass, "rediss://", "redis://", 1), "", "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Redis, c.RedisCAFile = tc.url, tc.ca
			_, rdb, err := connect.Redis(ctx, c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				rdb.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			for _, secret := range []string{"s3cr3t-pw", "fleet-pw", "nope"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error shows a password: %v", err)
				}
			}
		})
	}

	t.Run("a job over TLS", func(t *testing.T) {
		s3 := testenv.StartS3(t)
		s3.CreateBucket(t, "bkt")
		data := s3.PutRandom(t, "bkt", "obj", 3<<20, true)
		f := &fleettest.Fleet{Redis: &testenv.Redis{URL: withPass}, S3: s3}
		c := f.Config()
		c.RedisCAFile = ca
		fleettest.StartWorker(t, c)
		cl := fleettest.NewClient(t, c)
		dest := filepath.Join(t.TempDir(), "obj")
		sum, err := cl.Submit(ctx, fleettest.Request("s3://bkt/obj", dest))
		if err != nil {
			t.Fatal(err)
		}
		if j := cl.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 {
			t.Fatalf("job %+v", j)
		}
		if got, _ := os.ReadFile(dest); string(got) != string(data) {
			t.Fatal("bytes differ")
		}
	})
}

func TestRedisOptions(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	for _, tc := range []struct {
		url  string
		want string // the option type
		err  bool
	}{
		{"redis://127.0.0.1:6379/2", "asynq.RedisClientOpt", false},
		{"rediss://u:p@host:6380/0", "asynq.RedisClientOpt", false},
		{"redis-sentinel://:p@h1:26379,h2:26379/0?master=mymaster", "asynq.RedisFailoverClientOpt", false},
		{"redis-cluster://u:p@h1:7000,h2:7001", "asynq.RedisClusterClientOpt", false},
		{"redis-cluster://h1:7000/3", "", true},
		{"redis://host:6379/x", "", true},
	} {
		c := cfg
		c.Redis = tc.url
		opt, err := connect.RedisOptions(c)
		if (err != nil) != tc.err {
			t.Errorf("%s: error %v", tc.url, err)
			continue
		}
		if err == nil {
			if got := strings.TrimPrefix(typeName(opt), "*"); got != tc.want {
				t.Errorf("%s: %s, want %s", tc.url, got, tc.want)
			}
		}
	}
	c := cfg
	c.Redis = "rediss://u:p@host:6380/0"
	o, _ := connect.RedisOptions(c)
	if ro := o.(asynq.RedisClientOpt); ro.Username != "u" || ro.Password != "p" || ro.TLSConfig == nil || ro.TLSConfig.ServerName != "host" {
		t.Errorf("rediss options %+v", ro)
	}
	c.Redis = "redis-cluster://u:p@h1:7000,h2:7001"
	o, _ = connect.RedisOptions(c)
	if co := o.(asynq.RedisClusterClientOpt); len(co.Addrs) != 2 || co.Username != "u" {
		t.Errorf("cluster options %+v", co)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case asynq.RedisClientOpt:
		return "asynq.RedisClientOpt"
	case asynq.RedisFailoverClientOpt:
		return "asynq.RedisFailoverClientOpt"
	case asynq.RedisClusterClientOpt:
		return "asynq.RedisClusterClientOpt"
	}
	return "?"
}
