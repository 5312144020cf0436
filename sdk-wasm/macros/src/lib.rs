//! The attributes of `ledge-wasm-sdk`: `#[filter]`, `#[map]`, `#[filter_map]`, `#[flat_map]`,
//! `#[partitioner]`, and the stateful `#[aggregate]` and `#[join]` (docs/STREAMS.md). Use them
//! through `ledge_wasm_sdk`, which documents them.
//!
//! Each one keeps the function as written and adds, beside it:
//!
//! - a type with the function's name (in the type namespace, so it does not clash) that
//!   implements `ledge_wasm_sdk::__private::Plugin`: it binds the deployment parameters by
//!   name in `init` and calls the function in `process`;
//! - the module's exports, each a one-line call into the SDK's runtime.
//!
//! Everything else lives in the SDK, and the kinds' names and exports in `ledge_protocol`'s
//! `wasm_abi`, so this crate stays a thin parser.

use ledge_protocol::wasm_abi::PluginKind;
use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

/// Makes the function a filter: `fn(record: &Record<'_>, params...) -> bool` (or
/// `Result<bool, E>`); `true` keeps the record.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(PluginKind::Filter, attr, item)
}

/// Makes the function a map: `fn(record: &Record<'_>, params...) -> OutputRecord` (or
/// `Result<OutputRecord, E>`).
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(PluginKind::Map, attr, item)
}

/// Makes the function a filter_map: `fn(record: &Record<'_>, params...) ->
/// Option<OutputRecord>` (or `Result<Option<OutputRecord>, E>`); `None` drops the record.
#[proc_macro_attribute]
pub fn filter_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(PluginKind::FilterMap, attr, item)
}

/// Makes the function a flat_map: `fn(record: &Record<'_>, params...) -> Vec<OutputRecord>`
/// (or `Result<Vec<OutputRecord>, E>`); an empty vector drops the record.
#[proc_macro_attribute]
pub fn flat_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(PluginKind::FlatMap, attr, item)
}

/// Makes the function a partitioner: `fn(record: &Record<'_>, partition_count: u32,
/// params...) -> u32` (or `Result<u32, E>`).
#[proc_macro_attribute]
pub fn partitioner(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(PluginKind::Partitioner, attr, item)
}

/// Makes the function an aggregate (stateful; docs/STREAMS.md): `fn(state: &mut S, record:
/// &Record<'_>, params...)` returning `()` or `Result<(), E>`, folding one record into the
/// state of its key (`S: Serialize + DeserializeOwned + Default`, stored as JSON). Options:
/// `group_by = f` (`fn(&Record<'_>) -> key`, exported as `ledge_group`), `merge = f`
/// (`fn(S, S) -> S`, exported as `ledge_merge`; session windows need it), `schema = "v2"`
/// (added to `ledge_state_schema`).
#[proc_macro_attribute]
pub fn aggregate(attr: TokenStream, item: TokenStream) -> TokenStream {
    keep_on_error(
        item.clone(),
        syn::parse::<ItemFn>(item).and_then(|function| generate_aggregate(attr, &function)),
    )
}

/// Makes the function a join (stateful; docs/STREAMS.md): `fn(left: &Record<'_>, right:
/// Option<&Record<'_>>, params...)` for a stream-table left join, or `fn(left: &Record<'_>,
/// right: &Record<'_>, params...)` for a stream-stream join, returning what a flat_map does
/// (or `OutputRecord`, `Option<OutputRecord>`, or a `Result` of one).
#[proc_macro_attribute]
pub fn join(attr: TokenStream, item: TokenStream) -> TokenStream {
    let result = if attr.is_empty() {
        syn::parse::<ItemFn>(item.clone()).and_then(|function| generate_join(&function))
    } else {
        Err(syn::Error::new(
            TokenStream2::from(attr).span(),
            "#[join] takes no arguments; deployment parameters are function parameters",
        ))
    };
    keep_on_error(item, result)
}

/// The tokens, or the function as written with the error, so that one mistake does not
/// cascade into "not found" errors.
fn keep_on_error(item: TokenStream, result: syn::Result<TokenStream2>) -> TokenStream {
    match result {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            let mut tokens = item;
            tokens.extend(TokenStream::from(error.to_compile_error()));
            tokens
        }
    }
}

/// The `ledge_wasm_sdk::PluginKind` variant and the `Entries` method for `kind`. Its
/// attribute name and export come from `ledge_protocol::wasm_abi`, as the host's do.
fn sdk_names(kind: PluginKind) -> (&'static str, &'static str) {
    match kind {
        PluginKind::Filter => ("Filter", "filter"),
        PluginKind::FilterMap => ("FilterMap", "filter_map"),
        PluginKind::FlatMap => ("FlatMap", "flat_map"),
        PluginKind::Map => ("Map", "map"),
        PluginKind::Partitioner => ("Partitioner", "partition"),
        PluginKind::Aggregate => ("Aggregate", "group"),
        PluginKind::Join => ("Join", "join"),
    }
}

fn expand(kind: PluginKind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let result = if attr.is_empty() {
        syn::parse::<ItemFn>(item.clone()).and_then(|function| generate(kind, &function))
    } else {
        let name = kind.as_str();
        Err(syn::Error::new(
            TokenStream2::from(attr).span(),
            format!("#[{name}] takes no arguments; deployment parameters are function parameters"),
        ))
    };
    match result {
        Ok(tokens) => tokens.into(),
        // Keep the function so that one mistake does not cascade into "not found" errors.
        Err(error) => {
            let mut tokens = item;
            tokens.extend(TokenStream::from(error.to_compile_error()));
            tokens
        }
    }
}

/// One deployment parameter of the plug-in function.
struct Parameter {
    name: String,
    optional: bool,
    passing: Passing,
    /// The type kept in the plug-in's state and parsed with `FromStr`.
    stored: Type,
}

/// How a parameter reaches the function from the state.
enum Passing {
    /// `T`: a clone per call (free for `Copy` types).
    Value,
    /// `&str`: the stored `String`, borrowed.
    Str,
    /// `&T`: the stored `T`, borrowed.
    Reference,
}

fn generate(kind: PluginKind, function: &ItemFn) -> syn::Result<TokenStream2> {
    let (attribute, export) = (kind.as_str(), kind.export_name());
    let (variant, method) = sdk_names(kind);
    let signature = &function.sig;
    let name = &signature.ident;
    check_plain(attribute, signature)?;

    let mut inputs = signature.inputs.iter();
    let record_hint = "the first parameter is the record: `record: &Record<'_>`";
    match inputs.next() {
        Some(FnArg::Typed(record)) if matches!(&*record.ty, Type::Reference(r) if r.mutability.is_none()) =>
            {}
        Some(other) => return Err(error(other, record_hint)),
        None => return Err(error(signature, record_hint)),
    }
    if let PluginKind::Partitioner = kind {
        let hint = "a partitioner's second parameter is `partition_count: u32`";
        match inputs.next() {
            Some(FnArg::Typed(_)) => {}
            Some(other) => return Err(error(other, hint)),
            None => return Err(error(signature, hint)),
        }
    }
    let parameters = inputs.map(parameter).collect::<syn::Result<Vec<_>>>()?;

    let names: Vec<&str> = parameters.iter().map(|p| p.name.as_str()).collect();
    let state_types = parameters.iter().map(|p| {
        let stored = &p.stored;
        if p.optional {
            quote!(::core::option::Option<#stored>)
        } else {
            quote!(#stored)
        }
    });
    let bindings = parameters.iter().map(|p| {
        let (stored, name) = (&p.stored, &p.name);
        let bind = format_ident!("{}", if p.optional { "optional" } else { "required" });
        quote!(params.#bind::<#stored>(#name)?)
    });
    let arguments = parameters.iter().enumerate().map(|(index, p)| {
        let index = syn::Index::from(index);
        match (&p.passing, p.optional) {
            (Passing::Value, _) => quote!(::core::clone::Clone::clone(&state.#index)),
            (Passing::Str, false) => quote!(state.#index.as_str()),
            (Passing::Str, true) => quote!(state.#index.as_deref()),
            (Passing::Reference, false) => quote!(&state.#index),
            (Passing::Reference, true) => quote!(state.#index.as_ref()),
        }
    });
    let partition_count_argument = match kind {
        PluginKind::Partitioner => quote!(partition_count,),
        _ => quote!(),
    };
    let state = if parameters.is_empty() {
        format_ident!("_state")
    } else {
        format_ident!("state")
    };
    let partition_count = match kind {
        PluginKind::Partitioner => format_ident!("partition_count"),
        _ => format_ident!("_partition_count"),
    };
    // Errors about the return type (a missing `IntoFilterOutcome` impl) point at it.
    let output_span = match &signature.output {
        ReturnType::Default => signature.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let method = format_ident!("{method}");
    let call = quote_spanned! {output_span=>
        entries.#method(#name(record, #partition_count_argument #(#arguments),*))
    };
    let variant = format_ident!("{variant}");
    let export = format_ident!("{export}");
    let visibility = &function.vis;
    let sdk = quote!(::ledge_wasm_sdk);
    let common = common_exports(name);

    Ok(quote! {
        #function

        /// The plug-in defined by the function of the same name (generated by the attribute).
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #visibility struct #name {}

        impl #sdk::__private::Plugin for #name {
            const KIND: #sdk::PluginKind = #sdk::PluginKind::#variant;
            const PARAMETERS: &'static [&'static str] = &[#(#names),*];
            type State = (#(#state_types,)*);

            fn init(
                params: &mut #sdk::__private::Params<'_>,
            ) -> ::core::result::Result<Self::State, #sdk::__private::InitError> {
                let _ = &params;
                ::core::result::Result::Ok((#(#bindings,)*))
            }

            fn process(
                #state: &Self::State,
                record: &#sdk::Record<'_>,
                #partition_count: u32,
                entries: &mut #sdk::__private::Entries<'_>,
            ) {
                #call
            }
        }

        const _: () = {
            #common

            #[unsafe(no_mangle)]
            extern "C" fn #export(ptr: i32, len: i32) -> i64 {
                #sdk::__private::run::<#name>(ptr, len)
            }
        };
    })
}

fn parameter(input: &FnArg) -> syn::Result<Parameter> {
    let hint = "a deployment parameter is `name: Type` with `Type: FromStr`";
    let FnArg::Typed(typed) = input else {
        return Err(error(input, hint));
    };
    let Pat::Ident(ident) = &*typed.pat else {
        return Err(error(&typed.pat, hint));
    };
    if ident.by_ref.is_some() || ident.subpat.is_some() {
        return Err(error(&typed.pat, hint));
    }
    let name = ident.ident.unraw().to_string();
    let (optional, ty) = match option_inner(&typed.ty) {
        Some(inner) => (true, inner),
        None => (false, &*typed.ty),
    };
    let (passing, stored) = match ty {
        Type::Reference(reference) => {
            if let Some(mutability) = &reference.mutability {
                return Err(error(
                    mutability,
                    "parameters are read-only: take `T` or `&T`",
                ));
            }
            if is_str(&reference.elem) {
                (Passing::Str, syn::parse_quote!(::std::string::String))
            } else {
                (Passing::Reference, (*reference.elem).clone())
            }
        }
        ty => (Passing::Value, ty.clone()),
    };
    Ok(Parameter {
        name,
        optional,
        passing,
        stored,
    })
}

/// `T` if `ty` is spelled `Option<T>` (any path ending in `Option`).
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    match arguments.args.first() {
        Some(GenericArgument::Type(inner)) if arguments.args.len() == 1 => Some(inner),
        _ => None,
    }
}

fn is_str(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("str"))
}

fn error(tokens: impl quote::ToTokens, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(tokens, message)
}

/// The checks every attributed function passes: not async, unsafe, generic or variadic.
fn check_plain(attribute: &str, signature: &syn::Signature) -> syn::Result<()> {
    if let Some(token) = &signature.asyncness {
        return Err(error(
            token,
            format!("a #[{attribute}] function cannot be async"),
        ));
    }
    if let Some(token) = &signature.unsafety {
        return Err(error(
            token,
            format!("a #[{attribute}] function cannot be unsafe"),
        ));
    }
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        return Err(error(
            &signature.generics,
            format!("a #[{attribute}] function cannot be generic; write `&Record<'_>`"),
        ));
    }
    if let Some(variadic) = &signature.variadic {
        return Err(error(variadic, "variadic parameters are not supported"));
    }
    Ok(())
}

/// The pieces of generated code for the deployment parameters: their names, the state tuple's
/// types, the bindings in `init`, and the arguments passed from `state`.
struct ParameterCode {
    names: Vec<String>,
    state_types: Vec<TokenStream2>,
    bindings: Vec<TokenStream2>,
    arguments: Vec<TokenStream2>,
}

fn parameter_code(parameters: &[Parameter]) -> ParameterCode {
    ParameterCode {
        names: parameters.iter().map(|p| p.name.clone()).collect(),
        state_types: parameters
            .iter()
            .map(|p| {
                let stored = &p.stored;
                if p.optional {
                    quote!(::core::option::Option<#stored>)
                } else {
                    quote!(#stored)
                }
            })
            .collect(),
        bindings: parameters
            .iter()
            .map(|p| {
                let (stored, name) = (&p.stored, &p.name);
                let bind = format_ident!("{}", if p.optional { "optional" } else { "required" });
                quote!(params.#bind::<#stored>(#name)?)
            })
            .collect(),
        arguments: parameters
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let index = syn::Index::from(index);
                match (&p.passing, p.optional) {
                    (Passing::Value, _) => quote!(::core::clone::Clone::clone(&state.#index)),
                    (Passing::Str, false) => quote!(state.#index.as_str()),
                    (Passing::Str, true) => quote!(state.#index.as_deref()),
                    (Passing::Reference, false) => quote!(&state.#index),
                    (Passing::Reference, true) => quote!(state.#index.as_ref()),
                }
            })
            .collect(),
    }
}

/// The `record: &Record<'_>` parameter (any shared reference; the type checker does the rest).
fn record_parameter(
    input: Option<&FnArg>,
    signature: &syn::Signature,
    hint: &str,
) -> syn::Result<()> {
    match input {
        Some(FnArg::Typed(record)) if matches!(&*record.ty, Type::Reference(r) if r.mutability.is_none()) => {
            Ok(())
        }
        Some(other) => Err(error(other, hint)),
        None => Err(error(signature, hint)),
    }
}

/// The `Plugin` impl and the common exports shared by the stateful attributes.
fn plugin_impl(
    name: &syn::Ident,
    variant: &str,
    code: &ParameterCode,
    process: &TokenStream2,
) -> TokenStream2 {
    let sdk = quote!(::ledge_wasm_sdk);
    let variant = format_ident!("{variant}");
    let ParameterCode {
        names,
        state_types,
        bindings,
        ..
    } = code;
    quote! {
        impl #sdk::__private::Plugin for #name {
            const KIND: #sdk::PluginKind = #sdk::PluginKind::#variant;
            const PARAMETERS: &'static [&'static str] = &[#(#names),*];
            type State = (#(#state_types,)*);

            fn init(
                params: &mut #sdk::__private::Params<'_>,
            ) -> ::core::result::Result<Self::State, #sdk::__private::InitError> {
                let _ = &params;
                ::core::result::Result::Ok((#(#bindings,)*))
            }

            fn process(
                _state: &Self::State,
                record: &#sdk::Record<'_>,
                _partition_count: u32,
                entries: &mut #sdk::__private::Entries<'_>,
            ) {
                #process
            }
        }
    }
}

fn common_exports(name: &syn::Ident) -> TokenStream2 {
    let sdk = quote!(::ledge_wasm_sdk);
    quote! {
        #[unsafe(no_mangle)]
        extern "C" fn ledge_abi_version() -> i32 {
            #sdk::__private::abi_version()
        }

        #[unsafe(no_mangle)]
        extern "C" fn ledge_alloc(len: i32) -> i32 {
            #sdk::__private::alloc(len)
        }

        #[unsafe(no_mangle)]
        extern "C" fn ledge_init(ptr: i32, len: i32) -> i64 {
            #sdk::__private::init::<#name>(ptr, len)
        }

        #[unsafe(no_mangle)]
        extern "C" fn ledge_panic_message() -> i64 {
            #sdk::__private::panic_message()
        }
    }
}

/// `#[aggregate(group_by = f, merge = g, schema = "...")]`'s options.
#[derive(Default)]
struct AggregateOptions {
    group_by: Option<syn::Path>,
    merge: Option<syn::Path>,
    schema: Option<syn::LitStr>,
}

fn generate_aggregate(attr: TokenStream, function: &ItemFn) -> syn::Result<TokenStream2> {
    let mut options = AggregateOptions::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("group_by") {
            options.group_by = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("merge") {
            options.merge = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("schema") {
            options.schema = Some(meta.value()?.parse()?);
        } else {
            return Err(meta.error(
                "#[aggregate] takes `group_by = function`, `merge = function` and \
                 `schema = \"...\"`; deployment parameters are function parameters",
            ));
        }
        Ok(())
    });
    syn::parse::Parser::parse(parser, attr)?;

    let signature = &function.sig;
    let name = &signature.ident;
    check_plain("aggregate", signature)?;
    let mut inputs = signature.inputs.iter();
    let state_hint = "an aggregate's first parameter is its state: `state: &mut S`";
    let state_type = match inputs.next() {
        Some(FnArg::Typed(typed)) => match &*typed.ty {
            Type::Reference(reference) if reference.mutability.is_some() => {
                (*reference.elem).clone()
            }
            _ => return Err(error(typed, state_hint)),
        },
        Some(other) => return Err(error(other, state_hint)),
        None => return Err(error(signature, state_hint)),
    };
    record_parameter(
        inputs.next(),
        signature,
        "an aggregate's second parameter is the record: `record: &Record<'_>`",
    )?;
    let parameters = inputs.map(parameter).collect::<syn::Result<Vec<_>>>()?;
    let code = parameter_code(&parameters);
    let sdk = quote!(::ledge_wasm_sdk);

    let type_name: String = quote!(#state_type)
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let schema = match &options.schema {
        Some(version) => format!("{type_name};schema={}", version.value()),
        None => type_name,
    };
    let groups = options.group_by.is_some();
    let process = match &options.group_by {
        Some(group_by) => quote!(entries.group(#group_by(record))),
        None => quote!(entries.keep_record()),
    };
    let merge = match &options.merge {
        Some(merge) => quote!(#merge(a, b)),
        None => quote!({
            let _ = (a, b);
            ::core::panic!("this aggregate has no merge function (#[aggregate(merge = ...)])")
        }),
    };
    let output_span = match &signature.output {
        ReturnType::Default => signature.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let arguments = &code.arguments;
    let fold = quote_spanned! {output_span=>
        #sdk::IntoFoldOutcome::into_fold_outcome(#name(acc, record, #(#arguments),*))
    };
    let state = if parameters.is_empty() {
        format_ident!("_state")
    } else {
        format_ident!("state")
    };
    let plugin = plugin_impl(name, "Aggregate", &code, &process);
    let common = common_exports(name);
    let group_export = groups.then(|| {
        quote! {
            #[unsafe(no_mangle)]
            extern "C" fn ledge_group(ptr: i32, len: i32) -> i64 {
                #sdk::__private::run::<#name>(ptr, len)
            }
        }
    });
    let merge_export = options.merge.is_some().then(|| {
        quote! {
            #[unsafe(no_mangle)]
            extern "C" fn ledge_merge(ptr: i32, len: i32) -> i64 {
                #sdk::__private::merge::<#name>(ptr, len)
            }
        }
    });
    let visibility = &function.vis;
    Ok(quote! {
        #function

        /// The plug-in defined by the function of the same name (generated by the attribute).
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #visibility struct #name {}

        #plugin

        impl #sdk::__private::AggregatePlugin for #name {
            type Acc = #state_type;
            const SCHEMA: &'static str = #schema;
            const GROUPS: bool = #groups;

            fn fold(
                #state: &Self::State,
                acc: &mut Self::Acc,
                record: &#sdk::Record<'_>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                #fold
            }

            fn merge(a: Self::Acc, b: Self::Acc) -> Self::Acc {
                #merge
            }
        }

        const _: () = {
            #common

            #[unsafe(no_mangle)]
            extern "C" fn ledge_aggregate(ptr: i32, len: i32) -> i64 {
                #sdk::__private::aggregate::<#name>(ptr, len)
            }

            #[unsafe(no_mangle)]
            extern "C" fn ledge_state_schema() -> i64 {
                #sdk::__private::state_schema::<#name>()
            }

            #[unsafe(no_mangle)]
            extern "C" fn ledge_state_check(ptr: i32, len: i32) -> i64 {
                #sdk::__private::state_check::<#name>(ptr, len)
            }

            #group_export
            #merge_export
        };
    })
}

fn generate_join(function: &ItemFn) -> syn::Result<TokenStream2> {
    let signature = &function.sig;
    let name = &signature.ident;
    check_plain("join", signature)?;
    let mut inputs = signature.inputs.iter();
    record_parameter(
        inputs.next(),
        signature,
        "a join's first parameter is the left record: `left: &Record<'_>`",
    )?;
    let right_hint = "a join's second parameter is the right record: `right: Option<&Record<'_>>` \
                      (stream-table, a left join) or `right: &Record<'_>` (stream-stream)";
    let left_join = match inputs.next() {
        Some(FnArg::Typed(typed)) => match &*typed.ty {
            Type::Reference(reference) if reference.mutability.is_none() => false,
            ty if option_inner(ty).is_some() => true,
            _ => return Err(error(typed, right_hint)),
        },
        Some(other) => return Err(error(other, right_hint)),
        None => return Err(error(signature, right_hint)),
    };
    let parameters = inputs.map(parameter).collect::<syn::Result<Vec<_>>>()?;
    let code = parameter_code(&parameters);
    let sdk = quote!(::ledge_wasm_sdk);
    let output_span = match &signature.output {
        ReturnType::Default => signature.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let arguments = &code.arguments;
    let call = if left_join {
        quote_spanned! {output_span=>
            entries.join(#name(left, right, #(#arguments),*))
        }
    } else {
        let call = quote_spanned! {output_span=>
            entries.join(#name(left, right, #(#arguments),*))
        };
        quote! {
            match right {
                ::core::option::Option::Some(right) => #call,
                ::core::option::Option::None => entries.join(::core::result::Result::<
                    ::std::vec::Vec<#sdk::OutputRecord>,
                    &str,
                >::Err(
                    "a stream-stream join was called without a right record"
                )),
            }
        }
    };
    let process = quote! {
        let _ = record;
        entries.join(::core::result::Result::<::std::vec::Vec<#sdk::OutputRecord>, &str>::Err(
            "a join is not run record by record",
        ))
    };
    let state = if parameters.is_empty() {
        format_ident!("_state")
    } else {
        format_ident!("state")
    };
    let plugin = plugin_impl(name, "Join", &code, &process);
    let common = common_exports(name);
    let visibility = &function.vis;
    Ok(quote! {
        #function

        /// The plug-in defined by the function of the same name (generated by the attribute).
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #visibility struct #name {}

        #plugin

        impl #sdk::__private::JoinPlugin for #name {
            fn join(
                #state: &Self::State,
                left: &#sdk::Record<'_>,
                right: ::core::option::Option<&#sdk::Record<'_>>,
                entries: &mut #sdk::__private::Entries<'_>,
            ) {
                #call
            }
        }

        const _: () = {
            #common

            #[unsafe(no_mangle)]
            extern "C" fn ledge_join(ptr: i32, len: i32) -> i64 {
                #sdk::__private::join::<#name>(ptr, len)
            }
        };
    })
}
