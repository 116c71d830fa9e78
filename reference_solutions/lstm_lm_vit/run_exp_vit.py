"""Train the Vision Transformer (Problems 2-3) under one of the configurations below.

    python run_exp_vit.py --config 1 --epochs 5               # generated images, runs anywhere
    python run_exp_vit.py --data cifar10 --data-dir data/cifar-10-batches-bin \
        --config 7 --epochs 30 --device cuda

Every epoch prints the train and validation loss and accuracy and the wall-clock time; the
whole history goes to <log-dir>/vit_config<N>.json for plotting.
"""

import argparse

import torch
from torch.utils.data import DataLoader, Subset, TensorDataset
from utils.cifar10 import CIFAR10
from utils.synthetic import make_image_dataset
from utils.torch_utils import fit, make_optimizer, save_log, seed_experiment, to_device
from vit_solution import VisionTransformer

# The experiments to run and compare. Configurations 1-4 differ only in the optimizer
# ("momentum" is SGD with momentum 0.9), 2, 5 and 6 only in depth, 6 and 7 only in the block.
CONFIGS = {
    1: dict(optimizer="adam", lr=1e-3, weight_decay=0.0, layers=4, block="prenorm"),
    2: dict(optimizer="adamw", lr=1e-3, weight_decay=5e-4, layers=4, block="prenorm"),
    3: dict(optimizer="sgd", lr=1e-3, weight_decay=5e-4, layers=4, block="prenorm"),
    4: dict(optimizer="momentum", lr=1e-3, weight_decay=5e-4, layers=4, block="prenorm"),
    5: dict(optimizer="adamw", lr=1e-3, weight_decay=5e-4, layers=2, block="prenorm"),
    6: dict(optimizer="adamw", lr=1e-3, weight_decay=5e-4, layers=6, block="prenorm"),
    7: dict(optimizer="adamw", lr=1e-3, weight_decay=5e-4, layers=6, block="postnorm"),
}

# Generated data: 16x16 images and a narrow model, for one CPU epoch in a few seconds.
SYNTHETIC = dict(image_size=16, train=1024, valid=256, embed_dim=64, hidden_dim=128, num_heads=4)
CIFAR10_VALID = 5000  # images of the training files held out for validation


def make_data(args, config):
    """Return (train set, validation set, model) for the chosen data."""
    if args.data == "synthetic":
        s = SYNTHETIC
        images, labels = make_image_dataset(
            s["train"] + s["valid"], s["image_size"], num_classes=10, seed=args.seed
        )
        train = TensorDataset(images[: s["train"]], labels[: s["train"]])
        valid = TensorDataset(images[s["train"] :], labels[s["train"] :])
        model = VisionTransformer(
            embed_dim=s["embed_dim"],
            hidden_dim=s["hidden_dim"],
            num_heads=s["num_heads"],
            num_layers=config["layers"],
            num_patches=(s["image_size"] // 4) ** 2,
            block=config["block"],
        )
        return train, valid, model
    # two views of the training files: augmented for training, plain for validation
    augmented = CIFAR10(args.data_dir, split="train", augment=True)
    plain = CIFAR10(args.data_dir, split="train")
    order = torch.randperm(len(plain), generator=torch.Generator().manual_seed(args.seed))
    train = Subset(augmented, order[CIFAR10_VALID:].tolist())
    valid = Subset(plain, order[:CIFAR10_VALID].tolist())
    model = VisionTransformer(num_layers=config["layers"], block=config["block"])
    return train, valid, model


def run_epoch(model, loader, device, optimizer=None):
    """One pass over `loader`; trains when an optimizer is given.

    Returns (mean loss, accuracy) over all images of the pass.
    """
    training = optimizer is not None
    model.train(training)
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for images, labels in loader:
            images, labels = to_device((images, labels), device)
            logits = model(images)  # (B, num_classes)
            loss = model.loss(logits, labels)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(dim=-1) == labels).sum().item()
            seen += len(labels)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=int, default=1, choices=sorted(CONFIGS))
    parser.add_argument("--data", choices=["synthetic", "cifar10"], default="synthetic")
    parser.add_argument("--data-dir", default="data/cifar-10-batches-bin", help="folder of *.bin")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--log-dir", default="logs")
    args = parser.parse_args()

    config = CONFIGS[args.config]
    print(f"config {args.config}: {config}, data: {args.data}, device: {args.device}")
    seed_experiment(args.seed)
    device = torch.device(args.device)
    train, valid, model = make_data(args, config)
    model.to(device)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    valid_loader = DataLoader(valid, batch_size=args.batch_size)
    optimizer = make_optimizer(
        config["optimizer"], model.parameters(), config["lr"], config["weight_decay"]
    )

    log = {"config": args.config, **config, "data": args.data, "epochs": args.epochs}
    fit(run_epoch, model, train_loader, valid_loader, device, optimizer, args.epochs, "acc", log)
    save_log(log, args.log_dir, f"vit_config{args.config}.json")


if __name__ == "__main__":
    main()
