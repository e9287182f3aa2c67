"""The torch model networks (TCAE, CEL), their embedders, checkpoints and device choice.

Used by training (to fit them) and by the service's audio endpoint (to embed an upload); imports neither
`app` nor `training`."""
