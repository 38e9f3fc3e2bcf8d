package kmstest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// sigV4 is the signature AWS Signature Version 4 gives a request, computed
// as AWS computes it on receipt: over the headers the request's
// Authorization header lists in SignedHeaders, whatever they are, and over
// the body as received. A client chooses which headers it signs (the Go
// SDK signs content-length, botocore does not; both sign host), so the
// server must not choose them for it.
//
// amzDate is the X-Amz-Date value (20060102T150405Z); scope is the
// credential scope, <date>/<region>/<service>/aws4_request.
func sigV4(r *http.Request, body []byte, secretKey, amzDate, scope, signedHeaders string) string {
	canonical := strings.Join([]string{
		r.Method,
		canonicalURI(r.URL),
		canonicalQuery(r.URL.Query()),
		canonicalHeaders(r, signedHeaders),
		signedHeaders,
		hexSHA256(body),
	}, "\n")
	toSign := strings.Join([]string{"AWS4-HMAC-SHA256", amzDate, scope, hexSHA256([]byte(canonical))}, "\n")

	parts := strings.Split(scope, "/") // date, region, service, aws4_request
	k := []byte("AWS4" + secretKey)
	for _, p := range parts {
		k = hmacSHA256(k, p)
	}
	return hex.EncodeToString(hmacSHA256(k, toSign))
}

// canonicalURI is the path with each segment URI-encoded once, as every
// service but S3 wants it ("/" for KMS).
func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			s = d
		}
		segs[i] = uriEncode(s)
	}
	return strings.Join(segs, "/")
}

// canonicalQuery is the query sorted by name, then value, each encoded.
func canonicalQuery(q url.Values) string {
	var pairs []string
	for name, values := range q {
		for _, v := range values {
			pairs = append(pairs, uriEncode(name)+"="+uriEncode(v))
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "&")
}

// canonicalHeaders is one "name:value\n" line per signed header, in the
// order SignedHeaders gives them. host is the Host the request arrived
// with (net/http moves it out of Header), content-length its length if the
// header is not kept; repeated values are joined with commas, and each is
// trimmed with inner runs of spaces made one.
func canonicalHeaders(r *http.Request, signedHeaders string) string {
	var b strings.Builder
	for name := range strings.SplitSeq(signedHeaders, ";") {
		var values []string
		switch {
		case name == "host":
			values = []string{r.Host}
		case name == "content-length" && r.Header.Get("Content-Length") == "":
			values = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			values = slices.Clone(r.Header.Values(name))
		}
		for i, v := range values {
			v = strings.TrimSpace(v)
			for strings.Contains(v, "  ") {
				v = strings.ReplaceAll(v, "  ", " ")
			}
			values[i] = v
		}
		b.WriteString(name + ":" + strings.Join(values, ",") + "\n")
	}
	return b.String()
}

// uriEncode percent-encodes every byte but A-Z a-z 0-9 - _ . ~, as SigV4
// wants.
func uriEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
