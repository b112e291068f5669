"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), over the same DataPlane as REST."""
