package awskms

import (
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// KeepAlive wraps the HTTP client KMS calls go through so that they keep
// their keep-alive connection. NewClient applies it to the SDK's client;
// give it any client set with kms.Options.HTTPClient.
//
// Without it, about one call in ten closes its connection after KMS has
// answered, so that the next call pays for a new TLS handshake. The SDK
// (smithy-go) wraps each request body in a reader whose WriteTo returns
// io.EOF once closed, and closes it as soon as the response arrives.
// net/http writes a request with a streamed body by flushing the headers,
// writing the body straight to the connection, and then reading the body
// once more to check that it holds nothing past Content-Length; if KMS has
// answered and the SDK closed the body before that last read, it returns
// io.EOF, net/http takes it for a failed write, and closes the connection.
// Hiding WriteTo makes that read an ordinary Read, whose io.EOF is the end
// of the body.
func KeepAlive(c kms.HTTPClient) kms.HTTPClient {
	if _, ok := c.(keepAlive); ok || c == nil {
		return c
	}
	return keepAlive{c}
}

type keepAlive struct{ kms.HTTPClient }

func (c keepAlive) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		r := *req
		r.Body = readCloser{req.Body}
		req = &r
	}
	return c.HTTPClient.Do(req)
}

// readCloser has only Read and Close, whatever it wraps.
type readCloser struct{ io.ReadCloser }
