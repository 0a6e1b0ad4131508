package ops

import (
	"crypto/subtle"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// Handler returns the read-only HTML inspector: GET /ops lists requests
// (query parameters status, action, tenant, within (a duration such as
// 24h), limit and cursor) and GET /ops/request?key=K shows one with its
// event log. It changes nothing: cancel, retry and redrive are `streamer
// ops` commands.
//
// Operator access is not a client's: every page needs secret, as the
// parameter s (links carry it), compared in constant time, and answers
// only loopback peers (403 otherwise). The dev server mounts it on its own
// listener, which binds 127.0.0.1 by default, and prints the URL with the
// secret, a fresh one per process. secret must not be empty.
func Handler(o *Ops, secret string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ops", func(w http.ResponseWriter, r *http.Request) { listPage(w, r, o, secret) })
	mux.HandleFunc("GET /ops/request", func(w http.ResponseWriter, r *http.Request) { requestPage(w, r, o, secret) })
	return guard(mux, secret)
}

// guard refuses non-loopback peers and requests without the secret.
func guard(next http.Handler, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "the operator page answers loopback clients only", http.StatusForbidden)
			return
		}
		if secret == "" || subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("s")), []byte(secret)) != 1 {
			http.Error(w, "the operator page needs its secret (the s parameter of the URL streamer dev printed)", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		next.ServeHTTP(w, r)
	})
}

var listTmpl = template.Must(template.New("list").Funcs(template.FuncMap{"ms": fmtTime, "statusTime": storage.StatusTime}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Streamer ops</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style></head>
<body><h1>Requests: {{.Status}}</h1>
<p>{{range .Statuses}}<a href="?s={{$.Secret}}&amp;status={{.}}">{{.}}</a> {{end}}</p>
<form method="get"><input type="hidden" name="s" value="{{.Secret}}"><input type="hidden" name="status" value="{{.Status}}">
action <input name="action" value="{{.Action}}"> tenant <input name="tenant" value="{{.Tenant}}"> within <input name="within" value="{{.Within}}" placeholder="24h"> <button>filter</button></form>
{{if .Error}}<p style="color:red">{{.Error}}</p>{{end}}
<table><tr><th>id</th><th>tenant</th><th>subject</th><th>action</th><th>status</th><th>attempt</th><th>stalls</th><th>continuations</th><th>status time</th><th>created</th><th>error</th></tr>
{{range .Requests}}<tr><td><a href="/ops/request?s={{$.Secret}}&amp;key={{.Key.String}}">{{.Key.ID}}</a></td><td>{{.Key.Tenant}}</td><td>{{.Key.Subject}}</td><td>{{.Action}}</td><td>{{.Status}}</td><td>{{.Attempt}}</td><td>{{.Stalls}}</td><td>{{.Continuations}}</td><td>{{ms (statusTime .)}}</td><td>{{ms .CreatedAt}}</td><td>{{with .Error}}{{.Code}}: {{.Message}}{{end}}</td></tr>
{{else}}<tr><td colspan="11">none</td></tr>{{end}}</table>
{{if .Next}}<p><a href="{{.Next}}">next page</a></p>{{end}}
</body></html>`))

var detailTmpl = template.Must(template.New("detail").Funcs(template.FuncMap{"ms": fmtTime, "str": func(b []byte) string { return string(b) }}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Streamer ops: {{.Request.Key.ID}}</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%;vertical-align:top}pre{margin:0;white-space:pre-wrap}</style></head>
<body><p><a href="/ops?s={{.Secret}}&amp;status={{.Request.Status}}">back</a></p>
<h1>{{.Request.Key.ID}}</h1>
<table>
<tr><th>tenant / subject</th><td>{{.Request.Key.Tenant}} / {{.Request.Key.Subject}}</td></tr>
<tr><th>action</th><td>{{.Request.Action}}</td></tr>
<tr><th>status</th><td>{{.Request.Status}}</td></tr>
<tr><th>attempt</th><td>{{.Request.Attempt}}</td></tr>
<tr><th>stalls</th><td>{{.Request.Stalls}}</td></tr>
<tr><th>continuations</th><td>{{.Request.Continuations}}</td></tr>
<tr><th>lease until</th><td>{{ms .Request.LeaseUntil}}</td></tr>
<tr><th>not before</th><td>{{ms .Request.NotBefore}}</td></tr>
<tr><th>created / started / updated / expires</th><td>{{ms .Request.CreatedAt}} / {{ms .Request.StartedAt}} / {{ms .Request.UpdatedAt}} / {{ms .Request.ExpiresAt}}</td></tr>
<tr><th>connection</th><td>{{.Request.ConnectionID}}</td></tr>
<tr><th>metadata</th><td>{{range $k, $v := .Request.Metadata}}{{$k}}={{$v}} {{end}}</td></tr>
<tr><th>payload</th><td><pre>{{str .Request.Payload}}</pre></td></tr>
<tr><th>checkpoint</th><td><pre>{{str .Request.Checkpoint}}</pre></td></tr>
<tr><th>result</th><td><pre>{{str .Request.Result}}</pre>{{if .Request.ResultChunks}}({{.Request.ResultChunks}} chunks){{end}}</td></tr>
<tr><th>error</th><td>{{with .Request.Error}}{{.Code}}: {{.Message}}{{end}}</td></tr>
</table>
<h2>Events</h2>
<table><tr><th>seq</th><th>type</th><th>%</th><th>message</th><th>at</th><th>data</th></tr>
{{range .Events}}<tr><td>{{.Seq}}</td><td>{{.Type}}</td><td>{{.Percentage}}</td><td>{{.Message}}</td><td>{{ms .CreatedAt}}</td><td><pre>{{str .Data}}</pre></td></tr>
{{else}}<tr><td colspan="6">none</td></tr>{{end}}</table>
</body></html>`))

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func listPage(w http.ResponseWriter, r *http.Request, o *Ops, secret string) {
	v := r.URL.Query()
	q := Query{Status: v.Get("status"), Action: v.Get("action"), Tenant: v.Get("tenant"), Cursor: v.Get("cursor")}
	if q.Status == "" {
		q.Status = string(storage.StatusRunning)
	}
	data := map[string]any{
		"Secret": secret, "Status": q.Status, "Action": q.Action, "Tenant": q.Tenant, "Within": v.Get("within"),
		"Statuses": []string{"queued", StatusRetrying, "running", "canceling", "succeeded", "failed", "canceled"},
	}
	var err error
	if s := v.Get("within"); s != "" {
		if q.Within, err = time.ParseDuration(s); err != nil || q.Within <= 0 {
			w.WriteHeader(http.StatusBadRequest)
			data["Error"] = "within " + strconv.Quote(s) + ": want a positive duration, such as 24h"
		}
	}
	if n := v.Get("limit"); n != "" && data["Error"] == nil {
		if q.Limit, err = strconv.Atoi(n); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			data["Error"] = "limit " + strconv.Quote(n) + ": want a number"
		}
	}
	if data["Error"] == nil {
		page, err := o.List(r.Context(), q)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			data["Error"] = err.Error()
		}
		data["Requests"] = page.Requests
		if page.Cursor != "" {
			next := url.Values{}
			for k, vs := range v {
				next[k] = vs
			}
			next.Set("cursor", page.Cursor)
			data["Next"] = "?" + next.Encode()
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = listTmpl.Execute(w, data)
}

func requestPage(w http.ResponseWriter, r *http.Request, o *Ops, secret string) {
	k, err := storage.ParseKey(r.URL.Query().Get("key"))
	if err != nil {
		http.Error(w, "key: "+err.Error(), http.StatusBadRequest)
		return
	}
	d, err := o.Inspect(r.Context(), k)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = detailTmpl.Execute(w, struct {
		Detail
		Secret string
	}{d, secret})
}
