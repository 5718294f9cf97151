// parsecheck answers what Go's standard library (as dockerd uses it) makes of
// request parts: one JSON request a line on stdin, one JSON answer a line on
// stdout, in order. Raw bytes travel hex-encoded: header values, bodies and
// decoded query values need not be UTF-8, and encoding/json would replace
// invalid bytes.
//
// Ops:
//
//	{"op":"media","ct":HEX}                     mime.ParseMediaType
//	{"op":"query","raw":STR}                    url.ParseQuery
//	{"op":"form","method":STR,"target":STR,"ct":HEX|null,"body":HEX}
//	                                            http.ReadRequest + r.ParseForm, as moby's httputils.ParseForm
//	{"op":"clean","path":STR}                   filepath.Clean, path.Clean, filepath.IsAbs
//	{"op":"json","shape":"create"|"exec","body":HEX}
//	                                            json.NewDecoder(body).Decode into moby's request types
//	{"op":"version","raw":STR,"than":STR}       moby's versions.compare(raw, than), as dockerd's
//	                                            middleware and handlers compare the path's /vRAW
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type request struct {
	Op     string  `json:"op"`
	CT     *string `json:"ct"`
	Raw    string  `json:"raw"`
	Method string  `json:"method"`
	Target string  `json:"target"`
	Body   string  `json:"body"`
	Path   string  `json:"path"`
	Shape  string  `json:"shape"`
	Than   string  `json:"than"`
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	enc := json.NewEncoder(out)
	for {
		line, err := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if err := enc.Encode(answer(line)); err != nil {
				fatal(err)
			}
		}
		// Answer a batch as soon as the caller has sent all of it.
		if in.Buffered() == 0 || err != nil {
			if err := out.Flush(); err != nil {
				fatal(err)
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "parsecheck:", err)
	os.Exit(1)
}

func answer(line []byte) interface{} {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return map[string]string{"fault": "bad request line: " + err.Error()}
	}
	switch req.Op {
	case "media":
		return media(unhex(deref(req.CT)))
	case "query":
		return query(req.Raw)
	case "form":
		return form(req)
	case "clean":
		return clean(req.Path)
	case "json":
		return decodeJSON(req.Shape, unhex(req.Body))
	case "version":
		return map[string]int{"cmp": compareVersions(req.Raw, req.Than)}
	}
	return map[string]string{"fault": "unknown op " + req.Op}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		fatal(err)
	}
	return b
}

func errText(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

type mediaAnswer struct {
	MediaType string            `json:"mediatype"`
	Params    map[string]string `json:"params"`
	Err       *string           `json:"err"`
}

func media(ct []byte) mediaAnswer {
	mt, params, err := mime.ParseMediaType(string(ct))
	return mediaAnswer{hex.EncodeToString([]byte(mt)), params, errText(err)}
}

// values lists url.Values sorted by key, each key's values in Go's order, all hex.
type pair struct {
	Key    string   `json:"k"`
	Values []string `json:"v"`
}

func values(v url.Values) []pair {
	out := make([]pair, 0, len(v))
	for k, vs := range v {
		p := pair{Key: hex.EncodeToString([]byte(k)), Values: []string{}}
		for _, s := range vs {
			p.Values = append(p.Values, hex.EncodeToString([]byte(s)))
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

type queryAnswer struct {
	Values []pair  `json:"values"`
	Err    *string `json:"err"`
}

func query(raw string) queryAnswer {
	v, err := url.ParseQuery(raw)
	return queryAnswer{values(v), errText(err)}
}

type formAnswer struct {
	// The request did not parse as HTTP/1.1 (net/http's server answers 400).
	RequestErr *string `json:"request_err"`
	// ParseForm consumed the body as form values.
	BodyRead bool    `json:"body_read"`
	Form     []pair  `json:"form"`
	Err      *string `json:"err"`
	// moby's httputils.ParseForm returns the error (a 400) unless it is a "mime:" one.
	MobyRefuses bool `json:"moby_refuses"`
	// moby's CheckForJSON accepts the Content-Type for a JSON body.
	JSONAccepted bool `json:"json_accepted"`
}

func form(req request) formAnswer {
	body := unhex(req.Body)
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: docker\r\n", req.Method, req.Target)
	if req.CT != nil {
		fmt.Fprintf(&raw, "Content-Type: %s\r\n", unhex(*req.CT))
	}
	fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n", len(body))
	raw.Write(body)
	r, err := http.ReadRequest(bufio.NewReader(&raw))
	if err != nil {
		return formAnswer{RequestErr: errText(err)}
	}
	err = r.ParseForm()
	rest, _ := io.ReadAll(r.Body)
	return formAnswer{
		BodyRead:     len(body) > 0 && len(rest) == 0,
		Form:         values(r.Form),
		Err:          errText(err),
		MobyRefuses:  err != nil && !strings.HasPrefix(err.Error(), "mime:"),
		JSONAccepted: checkForJSON(r.Header.Get("Content-Type")),
	}
}

// checkForJSON is moby's httputils.CheckForJSON for a request with a body.
func checkForJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

type cleanAnswer struct {
	Filepath string `json:"filepath"`
	Path     string `json:"path"`
	Abs      bool   `json:"abs"`
}

func clean(p string) cleanAnswer {
	return cleanAnswer{filepath.Clean(p), path.Clean(p), filepath.IsAbs(p)}
}

type jsonAnswer struct {
	Err *string `json:"err"`
	// The decoded request, re-marshalled.
	Value interface{} `json:"value"`
	// For "create": what dockerd 20.10 acts on (Config, getHostConfig(),
	// NetworkingConfig), re-marshalled.
	Effective2010 interface{} `json:"effective_2010,omitempty"`
}

func decodeJSON(shape string, body []byte) jsonAnswer {
	switch shape {
	case "create":
		var w createRequest
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&w); err != nil {
			return jsonAnswer{Err: errText(err)}
		}
		var old wrapper2010
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&old); err != nil {
			return jsonAnswer{Err: errText(fmt.Errorf("v28 decodes but 20.10 does not: %w", err))}
		}
		effective := createRequest{old.Config, old.effectiveHostConfig(), old.NetworkingConfig}
		return jsonAnswer{Value: w, Effective2010: effective}
	case "exec":
		var e execOptions
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&e); err != nil {
			return jsonAnswer{Err: errText(err)}
		}
		return jsonAnswer{Value: e}
	}
	return jsonAnswer{Err: errText(fmt.Errorf("unknown shape %q", shape))}
}

// compareVersions is moby's api/types/versions.compare: dot-separated parts,
// each read by strconv.Atoi with its error ignored (so "" is 0 and an
// out-of-range part is the nearest int), a missing part is 0.
func compareVersions(v1, v2 string) int {
	if v1 == v2 {
		return 0
	}
	curr, other := strings.Split(v1, "."), strings.Split(v2, ".")
	n := len(curr)
	if len(other) > n {
		n = len(other)
	}
	for i := 0; i < n; i++ {
		var c, o int
		if i < len(curr) {
			c, _ = strconv.Atoi(curr[i])
		}
		if i < len(other) {
			o, _ = strconv.Atoi(other[i])
		}
		if c > o {
			return 1
		}
		if o > c {
			return -1
		}
	}
	return 0
}
