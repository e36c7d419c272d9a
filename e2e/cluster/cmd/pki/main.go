// Command pki writes the certificates, keys and kubeconfigs of the plumb test
// cluster: a cluster CA, the kube-apiserver serving certificate, one client
// certificate (and kubeconfig) per component and for the admin, the
// service-account signing key and a front-proxy CA for aggregated APIs.
//
// Files that already exist are kept, so a restarted cluster keeps trusting the
// clients it issued; kubeconfigs are always rewritten so that a changed
// apiserver port takes effect.
//
//	pki -dir .cluster/pki -server https://127.0.0.1:16443 -kubeconfig-dir .cluster
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// validity of every certificate: long enough for any test run or demo.
const validity = 5 * 365 * 24 * time.Hour

// client is one identity that talks to the apiserver with a certificate.
type client struct {
	file   string   // basename of the cert, key and kubeconfig
	user   string   // certificate CN: the Kubernetes user name
	groups []string // certificate O: the Kubernetes groups
}

var clients = []client{
	{file: "admin", user: "plumb-admin", groups: []string{"system:masters"}},
	{file: "kube-controller-manager", user: "system:kube-controller-manager"},
	{file: "kube-scheduler", user: "system:kube-scheduler"},
	// kwok patches the status of every Node and Pod and owns node Leases.
	{file: "kwok", user: "kwok", groups: []string{"system:masters"}},
}

func main() {
	dir := flag.String("dir", "", "directory for certificates and keys (created)")
	server := flag.String("server", "", "apiserver URL written into the kubeconfigs")
	kubeconfigDir := flag.String("kubeconfig-dir", "", "directory for <client>.kubeconfig files (default: -dir)")
	flag.Parse()
	if *dir == "" || *server == "" {
		fmt.Fprintln(os.Stderr, "usage: pki -dir DIR -server https://HOST:PORT [-kubeconfig-dir DIR]")
		os.Exit(2)
	}
	if *kubeconfigDir == "" {
		*kubeconfigDir = *dir
	}
	if err := run(*dir, *server, *kubeconfigDir); err != nil {
		fmt.Fprintln(os.Stderr, "pki:", err)
		os.Exit(1)
	}
}

func run(dir, server, kubeconfigDir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := ensureCA(dir, "ca", "plumb-test-cluster-ca")
	if err != nil {
		return err
	}
	apiserver := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		// 10.0.0.1 is the first address of --service-cluster-ip-range, the
		// ClusterIP of the `kubernetes` Service.
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.0.1")},
	}
	if err := ensureLeaf(dir, "apiserver", apiserver, ca); err != nil {
		return err
	}
	for _, c := range clients {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: c.user, Organization: c.groups},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if err := ensureLeaf(dir, c.file, tmpl, ca); err != nil {
			return err
		}
	}
	frontProxy, err := ensureCA(dir, "front-proxy-ca", "plumb-test-cluster-front-proxy-ca")
	if err != nil {
		return err
	}
	proxyClient := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "front-proxy-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := ensureLeaf(dir, "front-proxy-client", proxyClient, frontProxy); err != nil {
		return err
	}
	if err := ensureServiceAccountKey(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(kubeconfigDir, 0o700); err != nil {
		return err
	}
	for _, c := range clients {
		if err := writeKubeconfig(dir, kubeconfigDir, c, server); err != nil {
			return err
		}
	}
	return nil
}

// authority is a CA that signs leaf certificates.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func ensureCA(dir, name, commonName string) (*authority, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if exists(certPath) && exists(keyPath) {
		return loadCA(certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", name, err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return loadCA(certPath, keyPath)
}

func loadCA(certPath, keyPath string) (*authority, error) {
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	block, err := readPEM(keyPath)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	return &authority{cert: cert, key: key}, nil
}

func ensureLeaf(dir, name string, tmpl *x509.Certificate, ca *authority) error {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if exists(certPath) && exists(keyPath) {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := sign(tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("sign %s: %w", name, err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

// ensureServiceAccountKey writes the key pair that signs and verifies
// ServiceAccount tokens (sa.key private, sa.pub public).
func ensureServiceAccountKey(dir string) error {
	keyPath, pubPath := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if exists(keyPath) && exists(pubPath) {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(pubPath, "PUBLIC KEY", pub, 0o644)
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	// Back-date a little so a clock that differs by seconds between the
	// issuer and the verifier does not matter.
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(validity)
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func writeKubeconfig(pkiDir, outDir string, c client, server string) error {
	data := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(pkiDir, name))
		return base64.StdEncoding.EncodeToString(b), err
	}
	caData, err := data("ca.crt")
	if err != nil {
		return err
	}
	certData, err := data(c.file + ".crt")
	if err != nil {
		return err
	}
	keyData, err := data(c.file + ".key")
	if err != nil {
		return err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: plumb
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: plumb
  context:
    cluster: plumb
    user: %s
current-context: plumb
`, server, caData, c.user, certData, keyData, c.user)
	return writeFileAtomic(filepath.Join(outDir, c.file+".kubeconfig"), []byte(kubeconfig), 0o600)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readPEM(path string) (*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM data", path)
	}
	return block, nil
}

func readCert(path string) (*x509.Certificate, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
