"""Training machinery shared by ULMFiT and ELMo: the run in a workdir and its loop, orbax
checkpoints, device meshes and shardings, the train state."""
