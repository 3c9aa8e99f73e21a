//! A card's outbox is sent once even when two worker instances send it at
//! the same moment: after a rebalance the command consumer of one instance
//! and the callback consumer of another can both flush one card. Each
//! instance takes turns with itself (a mutex per card); across instances,
//! the card's publishing turn in the store decides. Before that turn, two
//! instances reading the same unsent rows each sent them.

use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::MessageContext;
use switchyard_canonical::card_event::{CardEvent, CardEventKind};
use switchyard_e2e::cards::{config, stop, Processors};
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_simulators::FaultPlan;
use switchyard_store::cards::{CardEventRow, CardRow, CardWrite, Commit, Reserved};
use switchyard_worker::card::run::start_card_worker;
use tokio_util::sync::CancellationToken;

/// Changes queued per card before the two instances flush it.
const QUEUED: i64 = 30;

fn queued_event(card_id: &str, seq: i64) -> Result<CardEventRow> {
    let event = CardEvent {
        event_id: format!("{card_id}:{seq}"),
        card_id: card_id.to_owned(),
        kind: if seq % 2 == 0 { CardEventKind::CardSuspended } else { CardEventKind::CardReinstated },
        from_state: Some("ACTIVE".into()),
        to_state: Some("SUSPENDED".into()),
        processor: "lithic".into(),
        processor_reference: Some(format!("tok-{card_id}")),
        last_four: Some("0016".into()),
        dispute_id: None,
        amount_minor: None,
        currency: None,
        linked_card_id: None,
        notify_cardholder: false,
        occurred_at_ms: seq,
        published_at_ms: 0,
    };
    Ok(CardEventRow { event_id: event.event_id.clone(), card_id: card_id.to_owned(), seq, payload: serde_json::to_string(&event)?, correlation_id: "corr-outbox".into() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_flushing_one_card_at_once_send_each_event_once() -> Result<()> {
    let env = TestEnv::new("card-outbox").await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let (first_stop, second_stop) = (CancellationToken::new(), CancellationToken::new());
    let first = start_card_worker(config(&env, &processors, "lithic", 2_000), first_stop.clone()).await?;
    let second = start_card_worker(config(&env, &processors, "lithic", 2_000), second_stop.clone()).await?;
    let events = TopicReader::new(&env.kafka, &env.topic("cards.events.v1"))?;

    let cards: Vec<String> = (0..4).map(|i| format!("{}card-{i}", env.prefix)).collect();
    for card in &cards {
        let reserved = CardRow {
            card_id: card.clone(),
            processor: "lithic".into(),
            processor_reference: None,
            last_four: None,
            state: "ORDERED".into(),
            lifecycle: "{}".into(),
            version: 1,
            issue_key: format!("{card}-0"),
            disputes: "[]".into(),
        };
        assert_eq!(first.cards.reserve(&reserved).await?, Reserved::Created);
        let changed = CardRow { processor_reference: Some(format!("tok-{card}")), state: "SUSPENDED".into(), version: 2, ..reserved.clone() };
        let queued = (1..=QUEUED).map(|seq| queued_event(card, seq)).collect::<Result<Vec<_>>>()?;
        let write = CardWrite {
            card_id: card,
            idempotency_key: &format!("{card}-burst"),
            outcome: "{}",
            rows: vec![(&changed, Some(1))],
            events: queued,
            audit: Vec::new(),
            correlation_id: "corr-outbox",
        };
        assert_eq!(first.cards.commit(&write).await?, Commit::Applied);
    }

    let ctx = MessageContext::from_headers(&[]);
    for card in &cards {
        let (a, b) = tokio::join!(first.handler.flush_card(&ctx, card), second.handler.flush_card(&ctx, card));
        a.map_err(|f| anyhow!("first instance: {f:?}"))?;
        b.map_err(|f| anyhow!("second instance: {f:?}"))?;
    }

    let expected = cards.len() * QUEUED as usize;
    let mut published = events.collect(expected, Duration::from_secs(30)).await?;
    published.extend(events.read_up_to(usize::MAX, Duration::from_secs(3)).await?);
    let decoder = switchyard_bus::AvroDecoder::new(env.registry_client.clone(), switchyard_worker::card::CARD_EVENT_SCHEMA)?;
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for record in &published {
        *sent.entry(decoder.decode::<CardEvent>(&record.payload).await?.event_id).or_default() += 1;
    }
    let twice: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} of {expected} events sent more than once: {twice:?}", twice.len());
    assert_eq!(sent.len(), expected, "every queued event sent");
    for card in &cards {
        assert!(first.cards.unsent_events(card).await?.is_empty(), "{card}: nothing left unsent");
    }
    stop(first, first_stop).await?;
    stop(second, second_stop).await
}
