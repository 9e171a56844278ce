"""The five articles' recipes, exactly as published (or, where an article is silent, pinned and said so)."""

from __future__ import annotations

from cnnkit.presets.base import FLAT, POOL, Preset, Reported, conv

ARTICLES: tuple[Preset, ...] = (
    Preset(
        name="article-000",
        description="Building a CNN in Keras: Conv64-Conv32-Dense, adam, batch 32, 3 epochs (article: no /255; "
                    "ours scales in-model).",
        params=203_434,
        input_shape=(28, 28, 1),
        num_classes=10,
        layers=(conv(64, 3, activation="relu"), conv(32, 3, activation="relu"), FLAT),
        optimizer={"name": "adam", "learning_rate": 1e-3},
        batch_size=32,
        epochs=3,
        reported=Reported("val_accuracy", 0.9757, "on the test set used as validation"),
    ),

    Preset(
        name="article-001",
        description="Simple CNN using Keras: Conv16-Conv8-Dense, adam, batch 32, 5 epochs (article: no /255; "
                    "ours scales in-model).",
        params=47_410,
        input_shape=(28, 28, 1),
        num_classes=10,
        layers=(conv(16, 3, activation="relu"), conv(8, 3, activation="relu"), FLAT),
        optimizer={"name": "adam", "learning_rate": 1e-3},
        batch_size=32,
        epochs=5,
        reported=Reported("val_accuracy", 0.9706, "on the test set used as validation"),
    ),

    Preset(
        name="article-002",
        description=(
            "Convolutional Neural Networks: 2x(Conv32 5x5) pool 2x(Conv64 3x3) pool Dense128, batch 128, 50 epochs. "
            "The article does not name its optimizer; SGD(0.01), Keras' default, matches its slow first epoch."
        ),
        params=484_714,
        input_shape=(28, 28, 1),
        num_classes=10,
        layers=(
            conv(32, 5, padding="same", activation="relu"),
            conv(32, 5, padding="same", activation="relu"),
            POOL,
            conv(64, 3, padding="same", activation="relu"),
            conv(64, 3, padding="same", activation="relu"),
            POOL,
            FLAT,
            ("Dense", {"units": 128, "activation": "relu"}),
        ),
        optimizer={"name": "sgd", "learning_rate": 0.01},
        batch_size=128,
        epochs=50,
        reported=Reported("val_accuracy", 0.9888, "on the test set used as validation, after 50 epochs"),
    ),

    Preset(
        name="article-003",
        description=(
            "Weather recognition: Conv32-64-128-256 (3x3, each pooled) Dropout0.5 Dense, RGB 150x150, adam, 10 epochs. "
            "Fixed: in-model /255, one softmax unit per class, no test leakage."
        ),
        params=438_596,
        input_shape=(150, 150, 3),
        num_classes=4,
        layers=(
            conv(32, 3, activation="relu"), POOL,
            conv(64, 3, activation="relu"), POOL,
            conv(128, 3, activation="relu"), POOL,
            conv(256, 3, activation="relu"), POOL,
            FLAT,
            ("Dropout", {"rate": 0.5}),
        ),
        optimizer={"name": "adam", "learning_rate": 1e-3},
        batch_size=32,
        epochs=10,
        dataset="weather",
        reported=Reported("val_accuracy", 0.93, "inflated: the article's test set contains training images"),
    ),

    Preset(
        name="article-004",
        description=(
            "A simple 2D CNN for MNIST: Conv32-Conv64 pool Dropout Dense128 Dropout, "
            "Adadelta with learning rate 1.0 (the old Keras default, pinned), batch 128, 10 epochs."
        ),
        params=1_199_882,
        input_shape=(28, 28, 1),
        num_classes=10,
        layers=(
            conv(32, 3, activation="relu"),
            conv(64, 3, activation="relu"),
            POOL,
            ("Dropout", {"rate": 0.25}),
            FLAT,
            ("Dense", {"units": 128, "activation": "relu"}),
            ("Dropout", {"rate": 0.5}),
        ),
        optimizer={"name": "adadelta", "learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-7},
        batch_size=128,
        epochs=10,
        reported=Reported("test_accuracy", 0.9904, "test loss 0.0296"),
    ),
)
