package testenv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"hash/crc64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/internal/testenv"
)

// needMinIO skips the test when make tools has not built MinIO, except
// under CI, where a missing server is a broken setup.
func needMinIO(t *testing.T) {
	t.Helper()
	if _, err := testenv.MinIOBinary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// TestMinIO: a plain and a TLS MinIO each store an object with a
// full-object CRC64NVME, report that checksum, and return the bytes,
// through the client StartMinIO's caller gets, whatever AWS_CA_BUNDLE says.
func TestMinIO(t *testing.T) {
	needMinIO(t)
	// The SDK's config loader would fail on this (and with a real bundle
	// would trust it instead of our CA); MinIO.Client must not read it.
	t.Setenv("AWS_CA_BUNDLE", filepath.Join(t.TempDir(), "no-such-bundle.pem"))
	nvme := crc64.MakeTable(0x9a6c9329ac4bc9b5) // CRC-64/NVME, reflected
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "TLS"}[tls]
		t.Run(name, func(t *testing.T) {
			m := testenv.StartMinIO(t, testenv.MinIOOptions{TLS: tls})
			if got := strings.HasPrefix(m.Endpoint, "https://"); got != tls || (m.CAFile != "") != tls {
				t.Fatalf("endpoint %s, CA file %q with TLS %v", m.Endpoint, m.CAFile, tls)
			}
			if tls {
				// Only the CA the client was given makes the certificate good.
				_, err := http.Get(m.Endpoint + "/minio/health/live")
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("a client without the CA: %v, want a certificate error", err)
				}
			}
			ctx := context.Background()
			c := m.Client(t)
			if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 1<<20+17)
			_, _ = rand.Read(data)
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String("bkt"), Key: aws.String("obj"), Body: bytes.NewReader(data),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
			}); err != nil {
				t.Fatal(err)
			}
			head, err := c.HeadObject(ctx, &s3.HeadObjectInput{
				Bucket: aws.String("bkt"), Key: aws.String("obj"), ChecksumMode: types.ChecksumModeEnabled,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, crc64.Checksum(data, nvme)))
			if got := aws.ToString(head.ChecksumCRC64NVME); got != want {
				t.Fatalf("HeadObject ChecksumCRC64NVME %q, want %q", got, want)
			}
			get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("obj")})
			if err != nil {
				t.Fatal(err)
			}
			defer get.Body.Close()
			got, err := io.ReadAll(get.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("GetObject returned %d bytes, not the %d put", len(got), len(data))
			}
		})
	}
}

// TestMinIOCredentials: the default keys are not versitygw's, and others
// can be chosen.
func TestMinIOCredentials(t *testing.T) {
	needMinIO(t)
	m := testenv.StartMinIO(t, testenv.MinIOOptions{AccessKey: "other-access", SecretKey: "other-secret-key"})
	if m.AccessKey != "other-access" || m.SecretKey != "other-secret-key" {
		t.Fatalf("keys %q %q", m.AccessKey, m.SecretKey)
	}
	if testenv.MinIOAccessKey == testenv.AccessKey || testenv.MinIOSecretKey == testenv.SecretKey {
		t.Fatal("MinIO's default keys are versitygw's")
	}
	wrong := *m
	wrong.SecretKey = testenv.MinIOSecretKey
	_, err := wrong.Client(t).ListBuckets(context.Background(), &s3.ListBucketsInput{})
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("ListBuckets with a wrong secret: %v, want SignatureDoesNotMatch", err)
	}
}
