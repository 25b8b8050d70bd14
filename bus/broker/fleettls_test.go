package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/yolkgo/yolk/bus/broker"
	"github.com/yolkgo/yolk/bus/bustest"
)

// testCA makes a CA and a certificate it signs for 127.0.0.1, and returns
// the server's TLS config and the CA's PEM file.
func testCA(t *testing.T) (*tls.Config, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "yolk test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, caFile
}

// A tls:// cluster URL makes the leaf link TLS, checked against YOLK_CLUSTER_CA;
// a user and password log it in; without the CA, or with a wrong password,
// the link does not come up.
func TestFleetLinkTLSAndPassword(t *testing.T) {
	serverTLS, caFile := testCA(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	hub, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, JetStream: true,
		JetStreamDomain: bustest.ClusterDomain, StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: port, TLSConfig: serverTLS, TLSTimeout: 2,
			Username: "leaf", Password: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	hub.Start()
	defer hub.Shutdown()
	if !hub.ReadyForConnections(5 * time.Second) {
		t.Fatal("hub not ready")
	}
	u, _ := url.Parse(fmt.Sprintf("tls://127.0.0.1:%d", port))
	start := func(password, ca string) *broker.Broker {
		return bustest.NewBrokerWith(t, broker.Config{Fleet: &broker.Fleet{URLs: []*url.URL{u}, User: "leaf", Password: password,
			CA: ca, Domain: bustest.ClusterDomain, Host: "h0", Stores: []broker.Store{{Name: "shared"}}}})
	}
	good := start("s3cret", caFile)
	waitFor(t, 10*time.Second, "the TLS link", good.FleetStores)
	good.Shutdown()

	for _, bad := range []struct{ name, password, ca string }{
		{"wrong password", "nope", caFile},
		{"the system's CAs", "s3cret", ""},
	} {
		b := start(bad.password, bad.ca)
		time.Sleep(time.Second) // nothing to wait for: the link must not come up
		if b.FleetLink() {
			t.Errorf("%s: the link came up", bad.name)
		}
		b.Shutdown()
	}
}
