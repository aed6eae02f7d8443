"""Training mechanics: the Trainer that steps and the callbacks that do everything else."""
