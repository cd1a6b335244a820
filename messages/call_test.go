package messages_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

type ctxKey struct{}

func TestCallFuncDo(t *testing.T) {
	ctx := context.WithValue(context.Background(), ctxKey{}, "marker")
	wantErr := errors.New("attempt failed")
	var calls, gotAttempt int
	var gotCtx context.Context
	var c messages.Call = messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
		calls++
		gotCtx, gotAttempt = ctx, attempt
		return messages.Result{StatusCode: 201, Body: []byte("ok")}, wantErr
	})
	res, err := c.Do(ctx, 3)
	if calls != 1 {
		t.Fatalf("function called %d times, want 1", calls)
	}
	if gotAttempt != 3 {
		t.Errorf("attempt = %d, want 3", gotAttempt)
	}
	if gotCtx.Value(ctxKey{}) != "marker" {
		t.Error("the function did not receive the caller's context")
	}
	if res.StatusCode != 201 || string(res.Body) != "ok" {
		t.Errorf("result = %+v", res)
	}
	if !errors.Is(err, wantErr) {
		t.Errorf("err = %v, want %v", err, wantErr)
	}
}
