package simulator

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// azureErrorBody is the body of the errors that Azure OpenAI answers
// itself, before a request reaches the model: a missing api-version, a
// bad key, a rate limit. Its code is the HTTP status as a string.
type azureErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// azureError answers status with Azure's own error body.
func (c *call) azureError(status int, msg string) {
	var b azureErrorBody
	b.Error.Code, b.Error.Message = strconv.Itoa(status), msg
	c.writeJSON(status, b)
}

// azureRateLimit answers 429 as Azure does for an exhausted budget of the
// deployment; wait < 0 means that waiting will not help.
func (c *call) azureRateLimit(budget string, wait time.Duration) {
	what := "call rate limit"
	if budget == "tokens" {
		what = "token rate limit"
	}
	op := "ChatCompletions_Create"
	if strings.HasSuffix(c.r.URL.Path, "/embeddings") {
		op = "Embeddings_Create"
	}
	retry := "Please retry after " + strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))) + " seconds."
	if wait < 0 {
		retry = "The request is larger than the limit allows."
	}
	c.azureError(http.StatusTooManyRequests, fmt.Sprintf(
		"Requests to the %s Operation under Azure OpenAI API version %s have exceeded %s of your current OpenAI S0 pricing tier. %s",
		op, c.r.URL.Query().Get("api-version"), what, retry))
}
