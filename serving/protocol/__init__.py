"""Wire formats: V2 JSON, the V2 binary tensor extension and V1, all decoding to `InferRequest`."""
