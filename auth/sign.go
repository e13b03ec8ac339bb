package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// SignHS256 signs claims with the shared secret in secretFile.
func SignHS256(c Claims, secretFile string) (string, error) {
	ks, err := loadSecret(secretFile)
	if err != nil {
		return "", err
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(ks.all[0])
}

// SignWithKey signs claims with the PEM private key in keyFile: RS256 for
// an RSA key, ES256 for an ECDSA P-256 key.
func SignWithKey(c Claims, keyFile string) (string, error) {
	b, err := readKeyFile(keyFile)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(bytes.TrimSpace(b))
	if blk == nil {
		return "", fmt.Errorf("auth: %s holds no PEM block", keyFile)
	}
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		err = fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return "", fmt.Errorf("auth: %s: %w", keyFile, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(k)
	case *ecdsa.PrivateKey:
		return jwt.NewWithClaims(jwt.SigningMethodES256, c).SignedString(k)
	}
	return "", errors.New("auth: key must be RSA or ECDSA P-256")
}
