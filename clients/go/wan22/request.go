package wan22

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Ptr returns a pointer to v, for the optional fields of GenerateRequest.
func Ptr[T any](v T) *T { return &v }

// PayloadFields are the XADD fields of the `payload` form: one field holding the JSON body.
func (r GenerateRequest) PayloadFields() (map[string]string, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("wan22: request: %w", err)
	}
	return map[string]string{"payload": string(body)}, nil
}

// Fields are the XADD fields of the flat form, every value a string as Redis stores it: numbers
// as written, objects (metadata) and lists (guide_scale pairs) as JSON.
func (r GenerateRequest) Fields() (map[string]string, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("wan22: request: %w", err)
	}
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.UseNumber() // seeds up to 2^63 stay exact
	var values map[string]any
	if err := decoder.Decode(&values); err != nil {
		return nil, fmt.Errorf("wan22: request: %w", err)
	}
	fields := make(map[string]string, len(values))
	for name, value := range values {
		switch v := value.(type) {
		case string:
			fields[name] = v
		case json.Number:
			fields[name] = v.String()
		case bool:
			fields[name] = fmt.Sprint(v)
		default:
			encoded, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("wan22: request field %s: %w", name, err)
			}
			fields[name] = string(encoded)
		}
	}
	return fields, nil
}

// DecodeEventFields decodes one entry of the events stream (its fields `type`, `task_id`,
// `payload`).
func DecodeEventFields(fields map[string]string) (Event, error) {
	return DecodeEvent(fields["type"], []byte(fields["payload"]))
}

// DecodeJob decodes the payload of an entry of a job stream.
func DecodeJob(payload []byte) (Job, error) {
	var job Job
	err := json.Unmarshal(payload, &job)
	return job, err
}

// DecodeProgress decodes the payload of an entry of the progress stream.
func DecodeProgress(payload []byte) (Progress, error) {
	var progress Progress
	err := json.Unmarshal(payload, &progress)
	return progress, err
}
