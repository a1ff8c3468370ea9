def run(mini_batch, context, extra):
    return mini_batch
