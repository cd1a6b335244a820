package imodel

import "os"

// Validate reports the first invalid field of c as a
// *messages.ConfigError, as New would, without an executor: a command can
// refuse a bad endpoint before it opens files or starts anything. A
// missing key is looked for in the environment variable APIKeyEnv names,
// as New does.
func (c EndpointConfig) Validate() error {
	_, err := c.resolve(os.Getenv)
	return err
}
