package wan22

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

func TestKeys(t *testing.T) {
	k := DefaultKeys()
	cases := map[string]string{
		k.Requests():                    "wan22:requests",
		k.Events():                      "wan22:events",
		k.Progress():                    "wan22-progress-stream",
		k.Jobs("t2v-A14B", "high"):      "wan22:jobs:t2v-A14B:high",
		k.Jobs("t2v-A14B", "normal"):    "wan22:jobs:t2v-A14B",
		k.Jobs("t2v-A14B", ""):          "wan22:jobs:t2v-A14B",
		k.Jobs("t2v-A14B", "low"):       "wan22:jobs:t2v-A14B:low",
		k.Task("abc"):                   "wan22:task:abc",
		Keys{Prefix: "blue"}.Progress(): "blue-progress-stream",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	streams := k.JobStreams("demo")
	if !reflect.DeepEqual(streams, []string{"wan22:jobs:demo:high", "wan22:jobs:demo", "wan22:jobs:demo:low"}) {
		t.Errorf("job streams %v", streams)
	}
	if !IsTerminal("failed") || IsTerminal("queued") {
		t.Error("IsTerminal")
	}
}

func TestFlatAndPayloadFields(t *testing.T) {
	request := GenerateRequest{
		Task:       "t2v-A14B",
		Prompt:     "a red fox",
		Seed:       Ptr(int64(9223372036854775807)),
		GuideScale: []float64{4, 5.5},
		Metadata:   map[string]string{"user": "u1"},
		Priority:   Ptr("high"),
		DeadlineS:  Ptr(600.0),
	}
	fields, err := request.Fields()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"task": "t2v-A14B", "prompt": "a red fox", "seed": "9223372036854775807", "guide_scale": "[4,5.5]",
		"metadata": `{"user":"u1"}`, "priority": "high", "deadline_s": "600",
	}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("flat fields %v, want %v", fields, want)
	}
	payload, err := request.PayloadFields()
	if err != nil {
		t.Fatal(err)
	}
	var back GenerateRequest
	if err := json.Unmarshal([]byte(payload["payload"]), &back); err != nil || *back.Seed != *request.Seed {
		t.Errorf("payload %v: %v", payload, err)
	}
}

// Samples written by the Python contracts (the test suite sets WAN22_GO_SAMPLES): every event type,
// a job, a progress entry and a task hash, decoded here and compared field by field.
type samples struct {
	Events   []map[string]string `json:"events"`
	Job      string              `json:"job"`
	Progress string              `json:"progress"`
	TaskHash map[string]string   `json:"task_hash"`
	TaskID   string              `json:"task_id"`
}

func TestPythonSamplesDecode(t *testing.T) {
	path := os.Getenv("WAN22_GO_SAMPLES")
	if path == "" {
		t.Skip("WAN22_GO_SAMPLES not set (the Python test suite writes them)")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s samples
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, fields := range s.Events {
		event, err := DecodeEventFields(fields)
		if err != nil {
			t.Fatal(err)
		}
		if event.EventType() != fields["type"] || event.EventTaskID() != fields["task_id"] {
			t.Errorf("%s: decoded as %s for %s", fields["type"], event.EventType(), event.EventTaskID())
		}
		sameFields(t, fields["type"], fields["payload"], event, "type")
		seen[fields["type"]] = true
	}
	if len(seen) != 7 {
		t.Errorf("event types seen: %v", seen)
	}
	job, err := DecodeJob([]byte(s.Job))
	if err != nil {
		t.Fatal(err)
	}
	sameFields(t, "job", s.Job, job)
	progress, err := DecodeProgress([]byte(s.Progress))
	if err != nil {
		t.Fatal(err)
	}
	sameFields(t, "progress", s.Progress, progress)
	state, err := TaskStateFromHash(s.TaskID, s.TaskHash)
	if err != nil {
		t.Fatal(err)
	}
	if state.Status != "queued" || state.Metadata["user"] != "u1" || state.Priority != "high" || state.CreatedAt == 0 {
		t.Errorf("task state %+v", state)
	}
	if _, err := DecodeEvent("no-such-type", []byte("{}")); err == nil {
		t.Error("an unknown event type decoded")
	}
}

// sameFields: every field of the Python JSON is in the Go value with the same value (zero values
// may be left out by omitempty), and the Go value has no field Python does not know.
func sameFields(t *testing.T, what, pythonJSON string, goValue any, ignore ...string) {
	t.Helper()
	var python, back map[string]any
	if err := json.Unmarshal([]byte(pythonJSON), &python); err != nil {
		t.Fatal(err)
	}
	encoded, _ := json.Marshal(goValue)
	if err := json.Unmarshal(encoded, &back); err != nil {
		t.Fatal(err)
	}
	for _, name := range ignore {
		delete(python, name)
	}
	for name, value := range python {
		got, ok := back[name]
		if !ok && isZero(value) {
			continue
		}
		if !reflect.DeepEqual(got, value) {
			t.Errorf("%s.%s: Go has %v, Python %v", what, name, got, value)
		}
	}
	for name := range back {
		if _, ok := python[name]; !ok {
			t.Errorf("%s.%s: unknown to Python", what, name)
		}
	}
}

func isZero(value any) bool {
	switch v := value.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case float64:
		return v == 0
	case bool:
		return !v
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	}
	return false
}
