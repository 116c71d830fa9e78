"""Train the LSTM language model (Problem 1) under one of the configurations below.

    python run_lstm.py --config 1 --epochs 5                # generated data, runs anywhere
    python run_lstm.py --data wikitext2 --data-dir data/wikitext2 \
        --embeddings data/embeddings.npz --config 2 --epochs 10 --device cuda

Every epoch prints the train and validation loss and perplexity and the wall-clock time; the
whole history goes to <log-dir>/lstm_config<N>.json for plotting.
"""

import argparse
import math

import torch
from lstm_solution import LSTM
from torch.utils.data import DataLoader, StackDataset
from utils.synthetic import make_token_corpus
from utils.torch_utils import fit, make_optimizer, save_log, seed_experiment, to_device
from utils.wikitext2 import Wikitext2

# The experiments to run and compare. "momentum" is SGD with momentum 0.9.
CONFIGS = {
    1: dict(optimizer="adam", lr=1e-3, weight_decay=0.0, layers=1),
    2: dict(optimizer="adamw", lr=1e-3, weight_decay=5e-4, layers=1),
    3: dict(optimizer="sgd", lr=1e-3, weight_decay=5e-4, layers=1),
    4: dict(optimizer="momentum", lr=1e-3, weight_decay=5e-4, layers=1),
    5: dict(optimizer="adamw", lr=1e-3, weight_decay=5e-4, layers=2),
    6: dict(optimizer="adamw", lr=1e-3, weight_decay=5e-4, layers=4),
}

# Generated data: small enough for one CPU epoch in about a second.
SYNTHETIC = dict(vocab_size=32, sequence_length=64, train=1024, valid=256, embedding=64, hidden=128)


def make_data(args, layers):
    """Return (train set, validation set, model) for the chosen data."""
    if args.data == "synthetic":
        s = SYNTHETIC
        corpus = make_token_corpus(
            s["train"] + s["valid"], s["sequence_length"], s["vocab_size"], seed=args.seed
        )
        train = StackDataset(**{k: v[: s["train"]] for k, v in corpus.items()})
        valid = StackDataset(**{k: v[s["train"] :] for k, v in corpus.items()})
        model = LSTM(s["vocab_size"], s["embedding"], s["hidden"], layers, learn_embeddings=True)
        return train, valid, model
    train = Wikitext2(args.data_dir, split="train")
    valid = Wikitext2(args.data_dir, split="validation")
    if args.embeddings:  # pretrained GPT embeddings, kept frozen as in the homework
        model = LSTM.load_embeddings_from(args.embeddings, hidden_size=512, num_layers=layers)
    else:
        model = LSTM(num_layers=layers, learn_embeddings=True)
    return train, valid, model


def run_epoch(model, loader, device, optimizer=None):
    """One pass over `loader`; trains when an optimizer is given.

    Returns (mean batch loss, perplexity), where the perplexity is exp of the mean NLL over
    all real target tokens of the pass.
    """
    training = optimizer is not None
    model.train(training)
    total_loss, total_nll, total_tokens, batches = 0.0, 0.0, 0.0, 0
    with torch.set_grad_enabled(training):
        for batch in loader:
            batch = to_device(batch, device)
            source, target, mask = batch["source"], batch["target"], batch["mask"]
            log_probas, _ = model(source, model.initial_states(source.shape[0], device))
            loss = model.loss(log_probas, target, mask)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            nll = -log_probas.detach().gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
            total_nll += (nll * mask).sum().item()
            total_tokens += mask.sum().item()
            total_loss += loss.item()
            batches += 1
    return total_loss / max(batches, 1), math.exp(total_nll / max(total_tokens, 1.0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=int, default=1, choices=sorted(CONFIGS))
    parser.add_argument("--data", choices=["synthetic", "wikitext2"], default="synthetic")
    parser.add_argument("--data-dir", default="data/wikitext2", help="folder of wiki.*.npz")
    parser.add_argument("--embeddings", default=None, help=".npz of GPT embeddings (wikitext2)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--log-dir", default="logs")
    args = parser.parse_args()

    config = CONFIGS[args.config]
    print(f"config {args.config}: {config}, data: {args.data}, device: {args.device}")
    seed_experiment(args.seed)
    device = torch.device(args.device)
    train, valid, model = make_data(args, config["layers"])
    model.to(device)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    valid_loader = DataLoader(valid, batch_size=args.batch_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config["optimizer"], trainable, config["lr"], config["weight_decay"])

    log = {"config": args.config, **config, "data": args.data, "epochs": args.epochs}
    fit(run_epoch, model, train_loader, valid_loader, device, optimizer, args.epochs, "ppl", log)
    save_log(log, args.log_dir, f"lstm_config{args.config}.json")


if __name__ == "__main__":
    main()
