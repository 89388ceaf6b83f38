package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"
)

// Default credentials of the MinIO root user: not versitygw's, so a test
// that mixes up the two servers fails to sign rather than passing by luck.
const (
	MinIOAccessKey = "s3fleet-minio-access"
	MinIOSecretKey = "s3fleet-minio-secret-0123456789"
)

// MinIO is a running MinIO server (single drive, in a temp dir).
type MinIO struct {
	*Process
	Endpoint             string // http://127.0.0.1:PORT, or https:// with TLS
	CAFile               string // PEM of the CA that signed the server's certificate; "" without TLS
	AccessKey, SecretKey string
	Dir                  string // the drive
}

// MinIOOptions configure StartMinIO.
type MinIOOptions struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost
	// signed by a throwaway CA (MinIO.CAFile).
	TLS bool
	// AccessKey and SecretKey of the root user; empty: MinIOAccessKey and
	// MinIOSecretKey.
	AccessKey, SecretKey string
	// KMSKey, when set, names the one key of MinIO's built-in KMS (a
	// random secret): SSE-KMS with that key ID, and SSE-S3, work.
	KMSKey string
}

// MinIOBinary locates MinIO: $S3FLEET_MINIO, else .bin/ of the repository
// (make tools builds it there).
func MinIOBinary() (string, error) {
	if p := os.Getenv("S3FLEET_MINIO"); p != "" {
		return p, nil
	}
	p := filepath.Join(RepoRoot(), ".bin", "minio")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("minio not found at %s: run `make tools` (builds it from source, ~5 min once)", p)
	}
	return p, nil
}

// StartMinIO starts a single-drive MinIO server on free loopback ports and
// waits (30 s at most) until it lists buckets.
func StartMinIO(t testing.TB, opts MinIOOptions) *MinIO {
	t.Helper()
	bin, err := MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	m := &MinIO{AccessKey: opts.AccessKey, SecretKey: opts.SecretKey, Dir: t.TempDir()}
	if m.AccessKey == "" {
		m.AccessKey = MinIOAccessKey
	}
	if m.SecretKey == "" {
		m.SecretKey = MinIOSecretKey
	}
	// Always a certs dir of our own: the default is ~/.minio/certs.
	certs := t.TempDir()
	scheme := "http"
	if opts.TLS {
		m.CAFile = writeMinIOCerts(t, certs)
		scheme = "https"
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	m.Endpoint = scheme + "://" + addr

	cmd := exec.Command(bin, "server", m.Dir, "--address", addr,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", FreePort(t)), "--certs-dir", certs)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_UPDATE=off",          // no update check
		"MINIO_BROWSER=off",         // no console
		"MINIO_CALLHOME_ENABLE=off", // no call-home
		// What CI=true would switch on anyway, so that a run on a laptop
		// behaves like CI: a 256 MiB buffer pool rather than half the RAM.
		"MINIO_CI_CD=on",
	)
	if opts.KMSKey != "" {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "MINIO_KMS_SECRET_KEY="+opts.KMSKey+":"+base64.StdEncoding.EncodeToString(secret))
	}
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	m.Process = &Process{Cmd: cmd, Addr: addr, Log: log}
	t.Cleanup(m.Stop)

	c := m.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		cancel()
		if err == nil {
			return m
		}
		if childExited(cmd.Process.Pid) {
			t.Fatalf("minio exited before it served %s: %v\n%s", m.Endpoint, err, log.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio did not list buckets at %s within 30s: %v\n%s", m.Endpoint, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client returns an S3 client of the server: path-style, region us-east-1,
// trusting the server's CA (and no other) when it serves TLS. It is built
// from s3.Options alone, without config.LoadDefaultConfig, so nothing in
// the environment reaches it: AWS_CA_BUNDLE cannot replace its CA pool,
// nor AWS_PROFILE, AWS_ENDPOINT_URL or AWS_ACCESS_KEY_ID its settings.
func (m *MinIO) Client(t testing.TB) *s3.Client {
	t.Helper()
	var roots *x509.CertPool
	if m.CAFile != "" {
		caPEM, err := os.ReadFile(m.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			t.Fatalf("no certificate in %s", m.CAFile)
		}
	}
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.DisableCompression = true // as s3client: bytes arrive as stored
		if roots != nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
		}
	})
	return s3.New(s3.Options{
		Region: Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		HTTPClient:  hc,
		// As s3client: validate a response checksum only when asked to.
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// writeMinIOCerts makes a throwaway CA and a server certificate for
// 127.0.0.1 and localhost (ECDSA P-256), puts the pair in dir as MinIO
// wants it (public.crt, private.key), and writes the CA next to it.
func writeMinIOCerts(t testing.TB, dir string) (caFile string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: certSerial(t), Subject: pkix.Name{CommonName: "s3fleet test MinIO CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: certSerial(t), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "public.crt"), "CERTIFICATE", srvDER)
	write(filepath.Join(dir, "private.key"), "PRIVATE KEY", keyDER)
	caFile = filepath.Join(t.TempDir(), "ca.crt")
	write(caFile, "CERTIFICATE", caDER)
	return caFile
}

func certSerial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// childExited reports whether the child pid has exited, without reaping it (so
// Process.Stop's Wait still collects it).
func childExited(pid int) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == nil && info.Signo != 0
}
