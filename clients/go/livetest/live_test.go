// Package livetest runs the Go types against a live stack (redis-server and ingest), with
// Debian's redigo in GOPATH mode. The Python test suite starts the stack and sets the variables.
package livetest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"wan22serve/clients/go/wan22"
)

func stack(t *testing.T) (redis.Conn, string) {
	url, ingest := os.Getenv("WAN22_REDIS_URL"), os.Getenv("WAN22_INGEST_URL")
	if url == "" || ingest == "" {
		t.Skip("WAN22_REDIS_URL and WAN22_INGEST_URL not set (the Python test suite starts the stack)")
	}
	conn, err := redis.DialURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return conn, ingest
}

// answer waits for the accepted or rejected event of a request (matched by request_id, the entry id).
func answer(t *testing.T, conn redis.Conn, requestID string) wan22.Event {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rows, err := redis.Values(conn.Do("XRANGE", wan22.DefaultKeys().Events(), "-", "+"))
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			entry := row.([]any)
			fields, err := redis.StringMap(entry[1], nil)
			if err != nil {
				t.Fatal(err)
			}
			event, err := wan22.DecodeEventFields(fields)
			if err != nil {
				t.Fatal(err)
			}
			switch e := event.(type) {
			case *wan22.Accepted:
				if e.RequestID == requestID {
					return e
				}
			case *wan22.Rejected:
				if e.RequestID == requestID {
					return e
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no answer to request %s", requestID)
	return nil
}

func xadd(t *testing.T, conn redis.Conn, fields map[string]string) string {
	id, err := redis.String(conn.Do("XADD", redis.Args{wan22.DefaultKeys().Requests(), "*"}.AddFlat(fields)...))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func state(t *testing.T, conn redis.Conn, taskID string) wan22.TaskState {
	hash, err := redis.StringMap(conn.Do("HGETALL", wan22.DefaultKeys().Task(taskID)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := wan22.TaskStateFromHash(taskID, hash)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRequestsThroughALiveIngest(t *testing.T) {
	conn, ingest := stack(t)
	defer conn.Close()
	keys := wan22.DefaultKeys()

	flat, err := wan22.GenerateRequest{
		Task: "demo", Prompt: "a red fox", TaskID: wan22.Ptr("go-flat"), Seed: wan22.Ptr(int64(42)),
		GuideScale: []float64{4, 5}, Metadata: map[string]string{"user": "u1"}, Priority: wan22.Ptr("high"),
	}.Fields()
	if err != nil {
		t.Fatal(err)
	}
	accepted, ok := answer(t, conn, xadd(t, conn, flat)).(*wan22.Accepted)
	if !ok || accepted.TaskID != "go-flat" || accepted.Task != "demo" {
		t.Fatalf("flat form: %+v", accepted)
	}
	rows, err := redis.Values(conn.Do("XRANGE", keys.Jobs("demo", "high"), "-", "+"))
	if err != nil || len(rows) != 1 {
		t.Fatalf("high job stream: %v %v", rows, err)
	}
	jobFields, _ := redis.StringMap(rows[0].([]any)[1], nil)
	job, err := wan22.DecodeJob([]byte(jobFields["payload"]))
	if err != nil || job.TaskID != "go-flat" || job.Seed != 42 || job.Priority != "high" || job.GuideScale[1] != 5 {
		t.Fatalf("job %+v: %v", job, err)
	}
	if s := state(t, conn, "go-flat"); s.Status != "queued" || s.Priority != "high" || s.Metadata["user"] != "u1" {
		t.Fatalf("task state %+v", s)
	}

	payload, err := wan22.GenerateRequest{Task: "demo", Prompt: "waves", DeadlineS: wan22.Ptr(0.2)}.PayloadFields()
	if err != nil {
		t.Fatal(err)
	}
	accepted, ok = answer(t, conn, xadd(t, conn, payload)).(*wan22.Accepted)
	if !ok {
		t.Fatal("payload form not accepted")
	}
	expired := waitForTerminal(t, conn, accepted.TaskID) // no generator runs: its deadline passes
	if failed, ok := expired.(*wan22.Failed); !ok || failed.ErrorType != "expired" {
		t.Fatalf("expected an expired failure, got %+v", expired)
	}

	bad, _ := wan22.GenerateRequest{Task: "demo", Prompt: "x", Priority: wan22.Ptr("urgent")}.Fields()
	rejected, ok := answer(t, conn, xadd(t, conn, bad)).(*wan22.Rejected)
	if !ok || rejected.Field == nil || *rejected.Field != "priority" {
		t.Fatalf("rejected: %+v", rejected)
	}

	body, _ := json.Marshal(wan22.GenerateRequest{Task: "demo", Prompt: "over HTTP", Priority: wan22.Ptr("low")})
	response, err := http.Post(ingest+"/generate", "application/json", bytes.NewReader(body))
	if err != nil || response.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /generate: %v %v", response, err)
	}
	var started struct {
		TaskID string `json:"task_id"`
	}
	_ = json.NewDecoder(response.Body).Decode(&started)
	response.Body.Close()
	response, err = http.Get(ingest + "/tasks/" + started.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	var over wan22.TaskState
	_ = json.NewDecoder(response.Body).Decode(&over)
	response.Body.Close()
	if over.Status != "queued" || over.Priority != "low" || over.Queue == nil || over.Queue.Position < 1 {
		t.Fatalf("GET /tasks: %+v", over)
	}
}

func waitForTerminal(t *testing.T, conn redis.Conn, taskID string) wan22.Event {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rows, err := redis.Values(conn.Do("XRANGE", wan22.DefaultKeys().Events(), "-", "+"))
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			fields, _ := redis.StringMap(row.([]any)[1], nil)
			if fields["task_id"] == taskID && fields["type"] != "accepted" {
				event, err := wan22.DecodeEventFields(fields)
				if err != nil {
					t.Fatal(err)
				}
				return event
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("task %s did not end", taskID)
	return nil
}
